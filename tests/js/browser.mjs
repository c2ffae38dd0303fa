// Debian's headless Chromium for the browser tests, driven by puppeteer-core; the tests never
// download a browser.
import { existsSync } from "node:fs";

import puppeteer from "puppeteer-core";

/** Debian's chromium (CHROMIUM names another). */
export function chromiumPath() {
  const candidates = [process.env.CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(Boolean);
  const found = candidates.find((candidate) => existsSync(candidate));
  if (!found) throw new Error(`No Chromium at ${candidates.join(", ")}: apt-get install chromium (or set CHROMIUM).`);
  return found;
}

export async function launchBrowser() {
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    // Root in CI containers cannot use Chromium's sandbox.
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}
