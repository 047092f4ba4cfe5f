// RFC 8785 JSON Canonicalization Scheme: the exact bytes of a ledger leaf.
//
// A leaf is the JCS form of its event, so an auditor recomputes the leaf from the event the
// server shows and hashes it, rather than trusting the server's leaf hash. JCS is defined in
// terms of ECMAScript's own serialisation: JSON.stringify gives the number and string forms;
// only object member order (by UTF-16 code units, which Array.prototype.sort compares) and
// the refusal of values JSON cannot carry are added here.

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** The canonical JSON text of a parsed JSON value; throws on what RFC 8785 refuses. */
export function canonicalize(value) {
  if (value === null || typeof value === "boolean") return JSON.stringify(value);
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError("JCS: non-finite number");
    return JSON.stringify(value);
  }
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw new TypeError("JCS: lone surrogate in a string");
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return "[" + value.map(canonicalize).join(",") + "]";
  if (typeof value === "object") {
    const keys = Object.keys(value).sort();
    return (
      "{" + keys.map((k) => canonicalize(k) + ":" + canonicalize(value[k])).join(",") + "}"
    );
  }
  throw new TypeError(`JCS: cannot encode a ${typeof value}`);
}
