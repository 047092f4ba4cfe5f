// Small DOM helpers shared by the pages. Text is always set as text, never as HTML:
// everything shown comes from the network.

export const byId = (id) => document.getElementById(id);

/** Create an element: el("td", {class: "x", "data-label": "Type"}, "text", childNode). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/**
 * Say something in a live region. `kind` is "info", "ok", "busy" or "error"; the kind is
 * also written as a word, so the message never depends on colour alone.
 */
export function say(region, text, kind = "info") {
  region.dataset.kind = kind;
  const prefix = { error: "Error: ", ok: "Done: " }[kind] ?? "";
  region.textContent = prefix + text;
}
