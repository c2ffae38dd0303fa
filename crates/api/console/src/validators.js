// Reading what people type as the values a validator (in Convex's JSON form) expects: a string
// field takes the text as it is, a number field a number or a date, a literal union one of its
// words, and anything else JSON. An error says what was expected.

/** "string", "number", "id(runs)", "\"a\" | \"b\"", ... */
export function describe(type) {
  if (!type) return "any";
  switch (type.type) {
    case "id":
      return `id(${type.tableName})`;
    case "literal":
      return JSON.stringify(type.value);
    case "union":
      return type.value.map(describe).join(" | ");
    case "array":
      return `${describe(type.value)}[]`;
    case "object":
      return "object";
    case "record":
      return "record";
    default:
      return type.type;
  }
}

/** The words of a union of string literals, or null when the type is not one. */
export function literalWords(type) {
  if (type?.type === "literal" && typeof type.value === "string") return [type.value];
  if (type?.type !== "union") return null;
  const words = type.value.map((member) => (member.type === "literal" && typeof member.value === "string" ? member.value : null));
  return words.every((w) => w !== null) ? words : null;
}

/** Parses `text` as a value of `type`; throws an Error naming the field when it cannot. */
export function parseValue(text, type, field) {
  const kind = type?.type;
  if (kind === "string" || kind === "id") return text;
  const words = literalWords(type);
  if (words) {
    if (!words.includes(text)) throw new Error(`${field} must be one of ${words.join(", ")}.`);
    return text;
  }
  if (kind === "number") {
    const number = Number(text);
    if (text.trim() !== "" && Number.isFinite(number)) return number;
    // A date only in ISO 8601 form: the browser's parser takes far too much for a date.
    const date = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(text.trim())
      ? Date.parse(text.trim())
      : NaN;
    if (Number.isFinite(date)) return date;
    throw new Error(`${field} must be a number (or an ISO 8601 date such as 2026-12-01T09:30Z).`);
  }
  if (kind === "boolean") {
    if (text === "true" || text === "false") return text === "true";
    throw new Error(`${field} must be true or false.`);
  }
  try {
    return JSON.parse(text);
  } catch {
    // Free-form fields (any) take plain text as a string.
    if (kind === "any" || kind === undefined) return text;
    throw new Error(`${field} must be JSON (${describe(type)}).`);
  }
}

/** The type of a top-level field of a table's document validator. */
export function fieldType(table, field) {
  if (field === "_creationTime") return { type: "number" };
  if (field === "_id") return { type: "id", tableName: table.name };
  return table.document?.value?.[field]?.fieldType;
}
