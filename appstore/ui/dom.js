// Building the page: elements are created one by one and text only ever goes in as text,
// so names and descriptions that look like HTML stay text.

// An element `tag` with `props` (attributes; `class`; `text`; `on<event>` listeners) and
// `children` (nodes or strings, arrays flattened, null and false skipped).
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  add(el, children);
  return el;
}

// Appends `children` to `el` as [`h`] does.
export function add(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// Whether `url` is an absolute http(s) URL, the only kind of link the page follows.
export function isWebUrl(url) {
  try {
    const u = new URL(url, location.href);
    return u.protocol === 'http:' || u.protocol === 'https:';
  } catch {
    return false;
  }
}

// A message block: `kind` is "error", "ok" or "info"; errors are announced.
export function notice(kind, ...children) {
  const role = kind === 'error' ? 'alert' : 'status';
  return h('div', { class: `notice ${kind}`, role }, ...children);
}

// A date the way the reader writes them.
export function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : d.toLocaleString();
}

// Bytes in KB or MB.
export function size(bytes) {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

// Who may see or open something, in words.
export const VISIBILITY = {
  PRIVATE: 'Only me',
  ALL_USERS: 'All signed-in users',
  PUBLIC: 'Everyone, signed in or not',
};

// A <select> of visibilities with `value` chosen.
export function visibilitySelect(id, value, onchange) {
  return h('select', { id, onchange },
    Object.entries(VISIBILITY).map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}
