// Drive's file browser. Talks S3 to Drive directly with URLs that /_drive/ui/api/presign
// signs with the session's credentials; builds every element with textContent, never HTML.

const PART = 8 * 1024 * 1024; // multipart part size
const PARALLEL = 3; // parts in flight per file
const SINGLE_MAX = PART; // larger files go up as multipart uploads
const PREVIEW_BYTES = 64 * 1024;
const PAGE = 200; // keys per listing page
const COPY_MAX = 5 * 1024 * 1024 * 1024; // CopyObject's limit
const RESUME_PREFIX = 'drive-ui-upload:';

const $ = (id) => document.getElementById(id);
const state = {
  me: null,
  bucket: '',
  prefix: '',
  items: [],
  token: null,
  uploads: [],
};

// ---- small helpers ---------------------------------------------------------

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function status(text, error = false) {
  const s = $('status');
  s.textContent = text;
  s.classList.toggle('error', error);
}

function size(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

const xmlEscape = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// S3's answer as a document, or an Error with S3's message.
async function s3xml(response) {
  const text = await response.text();
  const doc = text ? new DOMParser().parseFromString(text, 'application/xml') : null;
  const code = doc?.querySelector('Error > Code')?.textContent;
  if (!response.ok || code) {
    const message = doc?.querySelector('Error > Message')?.textContent;
    throw new Error(message || code || `Drive answered ${response.status}`);
  }
  return doc;
}

const text = (node, name) => node.getElementsByTagName(name)[0]?.textContent ?? '';

// ---- Drive's UI API -------------------------------------------------------

async function api(path, body) {
  const response = await fetch(path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-csrf-token': state.me.csrf },
    body: JSON.stringify(body ?? {}),
    credentials: 'same-origin',
  });
  const answer = await response.json().catch(() => ({}));
  if (response.status === 401) {
    showSignedOut('Your session has ended; sign in again.');
  }
  if (!response.ok) throw new Error(answer.message || `Drive answered ${response.status}`);
  return answer;
}

// A presigned URL for one S3 request.
async function presign(method, key, query = {}, extra = {}) {
  const { url } = await api('api/presign', { method, bucket: state.bucket, key, query, ...extra });
  return url;
}

async function s3(method, key, query = {}, init = {}, extra = {}) {
  const url = await presign(method, key, query, extra);
  return fetch(url, { method, ...init, credentials: 'omit' });
}

// ---- session ---------------------------------------------------------------

function showSignedOut(message) {
  state.me = null;
  $('browser').hidden = true;
  $('welcome').hidden = false;
  $('signin').hidden = false;
  $('signout').hidden = true;
  $('user').textContent = '';
  if (message) $('welcome').querySelector('p').textContent = message;
}

async function start() {
  const response = await fetch('api/me', { credentials: 'same-origin' });
  if (!response.ok) {
    showSignedOut();
    return;
  }
  state.me = await response.json();
  $('user').textContent = `Signed in as ${state.me.user}`;
  $('signout').hidden = false;
  $('signin').hidden = true;
  $('welcome').hidden = true;
  $('browser').hidden = false;
  const select = $('bucket');
  select.replaceChildren(...state.me.buckets.map((b) => el('option', { value: b, text: b })));
  const params = new URLSearchParams(location.hash.slice(1));
  const wanted = params.get('bucket');
  state.bucket = state.me.buckets.includes(wanted) ? wanted : state.me.buckets[0];
  select.value = state.bucket;
  state.prefix = params.get('prefix') || '';
  showPending();
  await refresh();
}

$('signout').addEventListener('click', async () => {
  try {
    await api('api/logout');
  } finally {
    location.assign('./');
  }
});

// ---- listing ---------------------------------------------------------------

function remember() {
  const p = new URLSearchParams({ bucket: state.bucket, prefix: state.prefix });
  history.replaceState(null, '', `#${p}`);
}

async function refresh() {
  remember();
  state.items = [];
  state.token = null;
  renderCrumbs();
  await loadPage();
}

async function loadPage() {
  const query = {
    'list-type': '2',
    prefix: state.prefix + $('search').value,
    delimiter: '/',
    'max-keys': String(PAGE),
  };
  if (state.token) query['continuation-token'] = state.token;
  status('Loading…');
  try {
    const doc = await s3xml(await s3('GET', '', query));
    for (const p of doc.getElementsByTagName('CommonPrefixes')) {
      state.items.push({ folder: true, key: text(p, 'Prefix') });
    }
    for (const c of doc.getElementsByTagName('Contents')) {
      const key = text(c, 'Key');
      if (key === state.prefix) continue; // the folder's own marker
      state.items.push({
        folder: false,
        key,
        size: Number(text(c, 'Size')),
        date: text(c, 'LastModified'),
      });
    }
    state.token = text(doc, 'IsTruncated') === 'true' ? text(doc, 'NextContinuationToken') : null;
    $('more').hidden = !state.token;
    status(state.items.length ? `${state.items.length} items${state.token ? ' so far' : ''}` : 'This folder is empty.');
    render();
  } catch (e) {
    status(`Could not list this folder: ${e.message}`, true);
  }
}

$('more').addEventListener('click', loadPage);
$('bucket').addEventListener('change', () => {
  state.bucket = $('bucket').value;
  state.prefix = '';
  $('usage-out').textContent = '';
  refresh();
});
$('sort').addEventListener('change', render);
let searchTimer;
$('search').addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refresh, 250);
});

function go(prefix) {
  state.prefix = prefix;
  $('search').value = '';
  refresh();
}

function renderCrumbs() {
  const parts = state.prefix.split('/').filter(Boolean);
  const items = [el('li', {}, el('button', { class: 'link', type: 'button', text: state.bucket, onclick: () => go('') }))];
  let acc = '';
  for (const p of parts) {
    acc += `${p}/`;
    const target = acc;
    items.push(el('li', {}, el('button', { class: 'link', type: 'button', text: p, onclick: () => go(target) })));
  }
  items[items.length - 1].firstChild.setAttribute('aria-current', 'location');
  $('crumbs').replaceChildren(...items);
}

const baseName = (key) => key.slice(state.prefix.length);

function sorted() {
  const by = $('sort').value;
  const cmp = {
    name: (a, b) => a.key.localeCompare(b.key),
    size: (a, b) => (b.size ?? -1) - (a.size ?? -1) || a.key.localeCompare(b.key),
    date: (a, b) => (b.date ?? '').localeCompare(a.date ?? '') || a.key.localeCompare(b.key),
  }[by];
  return [...state.items].sort((a, b) => (b.folder - a.folder) || cmp(a, b));
}

function render() {
  const rows = sorted().map((item) => {
    const name = baseName(item.key);
    const open = item.folder
      ? el('button', { class: 'link folder', type: 'button', text: name, title: 'Open folder', onclick: () => go(item.key) })
      : el('button', { class: 'link', type: 'button', text: name, onclick: () => preview(item), title: 'Preview' });
    const act = (label, fn, cls = '') => el('button', { type: 'button', text: label, class: cls, 'aria-label': `${label} ${name}`, onclick: () => fn(item) });
    const actions = item.folder
      ? [act('Delete', remove, 'danger')]
      : [act('Download', download), act('Share', share), act('Rename', rename), act('Delete', remove, 'danger')];
    return el('tr', { 'data-key': item.key },
      el('td', { class: 'name' }, open),
      el('td', { class: 'size', text: item.folder ? '' : size(item.size) }),
      el('td', { class: 'date', text: item.date ? new Date(item.date).toLocaleString() : '' }),
      el('td', { class: 'actions' }, ...actions));
  });
  $('rows').replaceChildren(...rows);
}

// ---- dialogs (no alert/confirm/prompt: HTML dialogs only) -------------------

function dialog(title, body, okLabel = 'OK', cancel = true) {
  const d = $('dialog');
  $('dialog-title').textContent = title;
  $('dialog-body').replaceChildren(...body);
  $('dialog-ok').textContent = okLabel;
  $('dialog-cancel').hidden = !cancel;
  d.returnValue = '';
  d.showModal();
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
  });
}

// ---- actions ---------------------------------------------------------------

async function download(item) {
  const name = item.key.split('/').pop();
  const url = await presign('GET', item.key, {
    'response-content-disposition': `attachment; filename*=UTF-8''${encodeURIComponent(name)}`,
  });
  // The browser streams it to disk; the page never holds the bytes.
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
}

async function preview(item) {
  const name = item.key.split('/').pop();
  const ext = name.includes('.') ? name.split('.').pop().toLowerCase() : '';
  const body = [];
  try {
    if (['png', 'jpg', 'jpeg', 'gif', 'webp', 'svg', 'bmp'].includes(ext)) {
      const response = await s3('GET', item.key);
      if (!response.ok) await s3xml(response);
      const blob = await response.blob();
      const img = el('img', { class: 'preview', alt: name });
      img.src = URL.createObjectURL(blob);
      img.addEventListener('load', () => URL.revokeObjectURL(img.src), { once: true });
      body.push(img);
    } else {
      const response = await s3('GET', item.key, {}, { headers: { range: `bytes=0-${PREVIEW_BYTES - 1}` } }, { headers: { range: `bytes=0-${PREVIEW_BYTES - 1}` } });
      if (!response.ok) await s3xml(response);
      const content = await response.text();
      const cut = item.size > PREVIEW_BYTES;
      if (ext === 'csv' || ext === 'tsv') {
        body.push(csvTable(content, ext === 'tsv' ? '\t' : ',', cut));
      } else {
        body.push(el('pre', { class: 'preview', text: content }));
      }
      if (cut) body.push(el('p', { class: 'hint', text: `Showing the first ${size(PREVIEW_BYTES)} of ${size(item.size)}.` }));
    }
  } catch (e) {
    body.push(el('p', { class: 'error', text: `No preview: ${e.message}` }));
  }
  await dialog(name, body, 'Close', false);
}

function csvTable(content, sep, cut) {
  let lines = content.split(/\r?\n/);
  if (cut) lines = lines.slice(0, -1); // the last line may be cut short
  lines = lines.filter((l) => l.length).slice(0, 50);
  const cells = (line) => {
    const out = [];
    let cur = '';
    let quoted = false;
    for (let i = 0; i < line.length; i += 1) {
      const c = line[i];
      if (quoted) {
        if (c === '"' && line[i + 1] === '"') { cur += '"'; i += 1; } else if (c === '"') quoted = false; else cur += c;
      } else if (c === '"') quoted = true;
      else if (c === sep) { out.push(cur); cur = ''; } else cur += c;
    }
    out.push(cur);
    return out;
  };
  const [head, ...rest] = lines.map(cells);
  return el('div', { class: 'table' }, el('table', { class: 'csv' },
    el('thead', {}, el('tr', {}, ...(head || []).map((h) => el('th', { scope: 'col', text: h })))),
    el('tbody', {}, ...rest.map((r) => el('tr', {}, ...r.map((c) => el('td', { text: c })))))));
}

async function share(item) {
  const left = state.me.expires - Math.floor(Date.now() / 1000);
  const max = Math.min(state.me.max_share_secs, left);
  const choices = [[3600, '1 hour'], [86400, '1 day'], [7 * 86400, '7 days']];
  const select = el('select', { id: 'share-expiry' },
    ...choices.filter(([s]) => s <= max).map(([s, label]) => el('option', { value: String(s), text: label })),
    el('option', { value: String(max), text: `Until my session ends (${Math.floor(max / 60)} minutes)` }));
  const out = el('input', { id: 'share-url', type: 'text', readonly: '', 'aria-label': 'Link' });
  const copy = el('button', { type: 'button', text: 'Copy link', onclick: async () => { out.select(); await navigator.clipboard?.writeText(out.value).catch(() => {}); } });
  const make = el('button', { type: 'button', class: 'primary', id: 'share-make', text: 'Create link' });
  const note = el('p', { class: 'hint', text: 'Anyone with the link can download this file until it expires: at most 7 days, and never after your session ends (links are signed with your session).' });
  make.addEventListener('click', async () => {
    try {
      const url = await presign('GET', item.key, {}, { expires: Number(select.value) });
      out.value = new URL(url, location.href).href;
    } catch (e) {
      out.value = '';
      note.textContent = e.message;
    }
  });
  await dialog(`Share ${item.key.split('/').pop()}`, [
    el('label', { class: 'field' }, 'Link valid for', select), make, note,
    el('div', { class: 'field' }, out, copy)], 'Done', false);
}

async function rename(item) {
  const input = el('input', { id: 'rename-to', type: 'text', value: item.key });
  const body = [el('label', { class: 'field' }, 'New name (the full path in this bucket)', input)];
  if (item.size > COPY_MAX) body.push(el('p', { class: 'hint', text: 'Files over 5 GiB cannot be renamed yet.' }));
  if (!(await dialog('Rename or move', body, 'Rename'))) return;
  const to = input.value;
  if (!to || to === item.key) return;
  try {
    status(`Renaming ${item.key}…`);
    await copyObject(item, to);
    await s3xml(await s3('DELETE', item.key));
    status(`Renamed to ${to}.`);
    await refresh();
  } catch (e) {
    status(`Could not rename: ${e.message}`, true);
  }
}

async function copyObject(item, to) {
  if (item.size > COPY_MAX) throw new Error('files over 5 GiB cannot be renamed yet');
  const source = `/${state.bucket}/${item.key.split('/').map(encodeURIComponent).join('/')}`;
  await s3xml(await s3('PUT', to, {}, { headers: { 'x-amz-copy-source': source } }, { headers: { 'x-amz-copy-source': source } }));
}

async function listAll(prefix, each) {
  let token = null;
  do {
    const query = { 'list-type': '2', prefix, 'max-keys': '1000' };
    if (token) query['continuation-token'] = token;
    const doc = await s3xml(await s3('GET', '', query));
    await each([...doc.getElementsByTagName('Contents')].map((c) => ({ key: text(c, 'Key'), size: Number(text(c, 'Size')) })));
    token = text(doc, 'IsTruncated') === 'true' ? text(doc, 'NextContinuationToken') : null;
  } while (token);
}

async function remove(item) {
  const what = item.folder ? `the folder ${item.key} and everything in it` : item.key;
  if (!(await dialog('Delete?', [el('p', { text: `Delete ${what}? This cannot be undone.` })], 'Delete'))) return;
  try {
    if (!item.folder) {
      await s3xml(await s3('DELETE', item.key));
    } else {
      let done = 0;
      await listAll(item.key, async (objects) => {
        if (!objects.length) return;
        const xml = `<Delete><Quiet>true</Quiet>${objects.map((o) => `<Object><Key>${xmlEscape(o.key)}</Key></Object>`).join('')}</Delete>`;
        const doc = await s3xml(await s3('POST', '', { delete: '' }, { body: xml }));
        const failed = doc.getElementsByTagName('Error').length;
        if (failed) throw new Error(`${failed} objects could not be deleted`);
        done += objects.length;
        status(`Deleted ${done} objects…`);
      });
    }
    status(`Deleted ${what}.`);
    await refresh();
  } catch (e) {
    status(`Could not delete: ${e.message}`, true);
  }
}

$('newfolder').addEventListener('click', async () => {
  const input = el('input', { id: 'folder-name', type: 'text' });
  if (!(await dialog('New folder', [el('label', { class: 'field' }, 'Folder name', input)], 'Create'))) return;
  const name = input.value.replace(/^\/+|\/+$/g, '');
  if (!name) return;
  try {
    await s3xml(await s3('PUT', `${state.prefix}${name}/`, {}, { body: '' }));
    await refresh();
  } catch (e) {
    status(`Could not create the folder: ${e.message}`, true);
  }
});

$('usage').addEventListener('click', async () => {
  const out = $('usage-out');
  let objects = 0;
  let bytes = 0;
  out.textContent = 'Counting…';
  try {
    await listAll('', async (list) => {
      objects += list.length;
      bytes += list.reduce((n, o) => n + o.size, 0);
      out.textContent = `Counting… ${objects} objects, ${size(bytes)}`;
    });
    out.textContent = `${state.bucket}: ${objects} objects, ${size(bytes)}`;
  } catch (e) {
    out.textContent = `Could not count: ${e.message}`;
  }
});

// ---- uploads ---------------------------------------------------------------

function updateOverall() {
  const total = state.uploads.reduce((n, u) => n + u.file.size, 0);
  const done = state.uploads.reduce((n, u) => n + u.sent(), 0);
  $('overall').max = total || 1;
  $('overall').value = done;
  const finished = state.uploads.filter((u) => u.finished).length;
  $('overall-text').textContent = `${finished} of ${state.uploads.length} files, ${size(done)} of ${size(total)}`;
}

// A PUT of `body` with progress; resolves to the response's ETag.
function put(url, body, onProgress, track) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    track.add(xhr);
    xhr.open('PUT', url);
    xhr.upload.onprogress = (e) => onProgress(e.loaded);
    xhr.onload = () => {
      track.delete(xhr);
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.getResponseHeader('ETag'));
      else {
        const doc = new DOMParser().parseFromString(xhr.responseText || '<x/>', 'application/xml');
        reject(new Error(doc.querySelector('Message')?.textContent || `Drive answered ${xhr.status}`));
      }
    };
    xhr.onerror = () => { track.delete(xhr); reject(Object.assign(new Error('the network failed'), { network: true })); };
    xhr.onabort = () => { track.delete(xhr); reject(new Error('cancelled')); };
    xhr.send(body);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Whether `e` says the request never got an answer (offline, connection dropped).
const lostNetwork = (e) => e.network === true || e instanceof TypeError;

// Resolves when the browser is online (at once when it is).
function online() {
  if (navigator.onLine) return Promise.resolve();
  return new Promise((r) => window.addEventListener('online', r, { once: true }));
}

// `fn`'s result, retried: answers that are errors up to 4 more times, lost connections as
// long as the browser is offline and up to 20 times in a row while it claims to be online.
async function retry(fn, upload) {
  let failed = 0;
  let lost = 0;
  let waited = false;
  for (;;) {
    try {
      const result = await fn();
      if (waited) upload.note.textContent = upload.working;
      return result;
    } catch (e) {
      if (upload.cancelled) throw e;
      if (lostNetwork(e)) {
        if (navigator.onLine && lost >= 20) throw e;
        if (navigator.onLine) lost += 1;
        upload.note.textContent = 'Waiting for the network…';
        waited = true;
        await online();
        await sleep(Math.min(500 * 2 ** Math.min(lost, 4), 8000));
      } else {
        if (failed >= 4) throw e;
        await sleep(500 * 2 ** failed);
        failed += 1;
      }
    }
  }
}

const resumeKey = (bucket, key) => `${RESUME_PREFIX}${bucket}/${key}`;

function showPending() {
  const list = [];
  for (let i = 0; i < localStorage.length; i += 1) {
    const k = localStorage.key(i);
    if (!k.startsWith(RESUME_PREFIX)) continue;
    const r = JSON.parse(localStorage.getItem(k));
    if (state.uploads.some((u) => u.bucket === r.bucket && u.key === r.key && !u.finished)) continue;
    const input = el('input', { type: 'file', class: 'visually-hidden', id: `resume-${i}` });
    input.addEventListener('change', () => {
      const f = input.files[0];
      if (f) upload(f, r.key, r.bucket);
    });
    const cancel = el('button', { type: 'button', text: 'Cancel upload', 'aria-label': `Cancel the upload of ${r.key}` });
    cancel.addEventListener('click', async () => {
      localStorage.removeItem(k);
      try {
        await api('api/presign', { method: 'DELETE', bucket: r.bucket, key: r.key, query: { uploadId: r.uploadId } })
          .then(({ url }) => fetch(url, { method: 'DELETE', credentials: 'omit' }));
      } finally {
        showPending();
      }
    });
    list.push(el('li', { 'data-key': r.key },
      el('span', { class: 'name', text: `${r.bucket}/${r.key} (${size(r.size)})` }),
      input, el('label', { class: 'button', for: input.id, text: 'Choose the file to resume' }), cancel));
  }
  $('pending-list').replaceChildren(...list);
  $('pending').hidden = !list.length;
}

async function upload(file, key, bucket = state.bucket) {
  const bar = el('progress', { max: String(file.size || 1), value: '0', 'aria-label': `Upload of ${key}` });
  const note = el('span', { class: 'hint', text: 'Waiting…' });
  const cancel = el('button', { type: 'button', text: 'Cancel', 'aria-label': `Cancel the upload of ${key}` });
  const row = el('li', { 'data-key': key }, el('span', { class: 'name', text: key }), bar, note, cancel);
  $('upload-list').append(row);
  $('uploads').hidden = false;
  const partsDone = new Map(); // part number → bytes
  const inFlight = new Map();
  const u = {
    file, key, bucket, note, working: '', finished: false, cancelled: false, xhrs: new Set(),
    sent: () => [...partsDone.values(), ...inFlight.values()].reduce((a, b) => a + b, 0),
  };
  state.uploads.push(u);
  const progress = () => { bar.value = u.sent(); updateOverall(); };
  const say = (text) => { u.working = text; note.textContent = text; };
  let uploadId = null;
  cancel.addEventListener('click', async () => {
    u.cancelled = true;
    for (const x of u.xhrs) x.abort();
    note.textContent = 'Cancelled';
    cancel.disabled = true;
    if (uploadId) {
      localStorage.removeItem(resumeKey(bucket, key));
      const url = (await api('api/presign', { method: 'DELETE', bucket, key, query: { uploadId } })).url;
      await fetch(url, { method: 'DELETE', credentials: 'omit' });
    }
  });
  const sign = async (method, query = {}) => (await api('api/presign', { method, bucket, key, query })).url;
  try {
    if (file.size <= SINGLE_MAX) {
      say('Uploading…');
      await retry(async () => put(await sign('PUT'), file, (n) => { inFlight.set(1, n); progress(); }, u.xhrs), u);
      inFlight.clear();
      partsDone.set(1, file.size);
    } else {
      const count = Math.ceil(file.size / PART);
      const stored = JSON.parse(localStorage.getItem(resumeKey(bucket, key)) || 'null');
      const etags = new Map();
      if (stored && stored.size === file.size && stored.lastModified === file.lastModified && stored.name === file.name) {
        uploadId = stored.uploadId;
        say('Resuming…');
        let marker = '0';
        for (;;) {
          const response = await retry(async () => fetch(await sign('GET', { uploadId, 'part-number-marker': marker }), { credentials: 'omit' }), u);
          if (response.status === 404) { uploadId = null; break; }
          const doc = await s3xml(response);
          for (const p of doc.getElementsByTagName('Part')) {
            const n = Number(text(p, 'PartNumber'));
            const expected = n < count ? PART : file.size - PART * (count - 1);
            if (Number(text(p, 'Size')) === expected) {
              etags.set(n, text(p, 'ETag'));
              partsDone.set(n, expected);
            }
          }
          if (text(doc, 'IsTruncated') !== 'true') break;
          marker = text(doc, 'NextPartNumberMarker');
        }
        if (!uploadId) { etags.clear(); partsDone.clear(); }
      }
      if (!uploadId) {
        const doc = await s3xml(await retry(async () => fetch(await sign('POST', { uploads: '' }), { method: 'POST', credentials: 'omit' }), u));
        uploadId = text(doc, 'UploadId');
        localStorage.setItem(resumeKey(bucket, key), JSON.stringify({
          uploadId, bucket, key, size: file.size, lastModified: file.lastModified, name: file.name,
        }));
      }
      showPending();
      progress();
      const missing = [];
      for (let n = 1; n <= count; n += 1) if (!etags.has(n)) missing.push(n);
      say(`Uploading ${missing.length} of ${count} parts…`);
      const worker = async () => {
        while (missing.length && !u.cancelled) {
          const n = missing.shift();
          const blob = file.slice((n - 1) * PART, Math.min(n * PART, file.size));
          const etag = await retry(async () => put(
            await sign('PUT', { partNumber: String(n), uploadId }), blob,
            (b) => { inFlight.set(n, b); progress(); }, u.xhrs), u);
          inFlight.delete(n);
          partsDone.set(n, blob.size);
          etags.set(n, etag);
          progress();
        }
      };
      await Promise.all(Array.from({ length: PARALLEL }, worker));
      if (u.cancelled) throw new Error('cancelled');
      say('Finishing…');
      const xml = `<CompleteMultipartUpload>${[...etags.keys()].sort((a, b) => a - b)
        .map((n) => `<Part><PartNumber>${n}</PartNumber><ETag>${xmlEscape(etags.get(n))}</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
      await s3xml(await retry(async () => fetch(await sign('POST', { uploadId }), { method: 'POST', body: xml, credentials: 'omit' }), u));
      localStorage.removeItem(resumeKey(bucket, key));
    }
    u.finished = true;
    note.textContent = 'Done';
    cancel.hidden = true;
    progress();
    if (bucket === state.bucket) refreshSoon();
  } catch (e) {
    u.finished = true;
    if (!u.cancelled) note.textContent = `Failed: ${e.message}`;
    note.classList.add('error');
    progress();
  }
}

let refreshTimer;
function refreshSoon() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(refresh, 300);
}

// Uploads `files` ([file, relative path]) into the current folder, a few files at a time.
async function uploadAll(files) {
  const queue = [...files];
  const worker = async () => {
    while (queue.length) {
      const [file, rel] = queue.shift();
      await upload(file, state.prefix + rel);
    }
  };
  await Promise.all(Array.from({ length: 2 }, worker));
}

$('files').addEventListener('change', (e) => {
  uploadAll([...e.target.files].map((f) => [f, f.name]));
  e.target.value = '';
});
$('folder').addEventListener('change', (e) => {
  uploadAll([...e.target.files].map((f) => [f, f.webkitRelativePath || f.name]));
  e.target.value = '';
});

// Every file under a dropped entry, with its path.
async function entries(entry, path = '') {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    return [[file, path + entry.name]];
  }
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
    if (!batch.length) break;
    for (const child of batch) out.push(...await entries(child, `${path}${entry.name}/`));
  }
  return out;
}

const drop = document.body;
drop.addEventListener('dragover', (e) => {
  if (!state.me) return;
  e.preventDefault();
  $('drop').classList.add('over');
});
drop.addEventListener('dragleave', () => $('drop').classList.remove('over'));
drop.addEventListener('drop', async (e) => {
  if (!state.me) return;
  e.preventDefault();
  $('drop').classList.remove('over');
  const items = [...(e.dataTransfer.items || [])].map((i) => i.webkitGetAsEntry?.()).filter(Boolean);
  const files = items.length
    ? (await Promise.all(items.map((i) => entries(i)))).flat()
    : [...e.dataTransfer.files].map((f) => [f, f.name]);
  uploadAll(files);
});

start().catch((e) => status(`Drive could not be reached: ${e.message}`, true));
