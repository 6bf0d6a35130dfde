// A small, safe Markdown renderer: headings, paragraphs, lists, emphasis, inline and fenced
// code, and links to http(s) URLs only. It builds elements and text nodes; no markup in the
// source is ever interpreted as HTML.

import { h, isWebUrl } from './dom.js';

// Inline spans: `code`, **strong**, *em* or _em_, [label](url).
const INLINE = /(`+)([^`]+?)\1|\*\*(.+?)\*\*|__(.+?)__|\*([^*\s][^*]*?)\*|_([^_\s][^_]*?)_|\[([^\]]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/;

// The nodes of one line or paragraph of inline Markdown.
export function inline(text) {
  const out = [];
  let rest = text;
  while (rest) {
    const m = INLINE.exec(rest);
    if (!m) {
      out.push(rest);
      break;
    }
    if (m.index > 0) out.push(rest.slice(0, m.index));
    if (m[2] !== undefined) out.push(h('code', { text: m[2] }));
    else if (m[3] !== undefined || m[4] !== undefined) out.push(h('strong', {}, inline(m[3] ?? m[4])));
    else if (m[5] !== undefined || m[6] !== undefined) out.push(h('em', {}, inline(m[5] ?? m[6])));
    else if (m[7] !== undefined) {
      const url = m[8];
      if (/^https?:\/\//i.test(url) && isWebUrl(url)) {
        out.push(h('a', { href: url, rel: 'noopener noreferrer nofollow', target: '_blank' }, inline(m[7])));
      } else {
        out.push(...inline(m[7]));
      }
    }
    rest = rest.slice(m.index + m[0].length);
  }
  return out;
}

// The elements of a Markdown document, in a fragment.
export function markdown(source) {
  const lines = String(source).replace(/\r\n?/g, '\n').split('\n');
  const frag = document.createDocumentFragment();
  let para = [];
  let list = null;
  const flush = () => {
    if (para.length) frag.append(h('p', {}, inline(para.join(' '))));
    para = [];
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = /^\s*(```|~~~)/.exec(line);
    if (fence) {
      flush();
      list = null;
      const code = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) code.push(lines[i]);
      frag.append(h('pre', {}, h('code', { text: code.join('\n') })));
      continue;
    }
    const heading = /^(#{1,6})\s+(.*?)\s*#*\s*$/.exec(line);
    if (heading) {
      flush();
      list = null;
      // The page's own title is the h1: the document's levels start at h2.
      const level = Math.min(heading[1].length + 1, 6);
      frag.append(h(`h${level}`, {}, inline(heading[2])));
      continue;
    }
    const item = /^\s*(?:([-*+])|(\d{1,9})[.)])\s+(.*)$/.exec(line);
    if (item) {
      flush();
      const tag = item[1] ? 'ul' : 'ol';
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = h(tag);
        frag.append(list);
      }
      list.append(h('li', {}, inline(item[3])));
      continue;
    }
    if (!line.trim()) {
      flush();
      list = null;
      continue;
    }
    if (list && /^\s+\S/.test(line)) {
      list.lastChild.append(' ', ...inline(line.trim()));
      continue;
    }
    list = null;
    para.push(line.trim());
  }
  flush();
  return frag;
}
