// Talking to the App Store's API: the session (who is signed in, and the CSRF token that
// every change must carry), and errors turned into plain words.

let csrfToken = '';

// Who is signed in (`null` for nobody), from GET /auth/session.
export async function loadSession() {
  let response;
  try {
    response = await fetch('/auth/session', { credentials: 'same-origin' });
  } catch {
    return null;
  }
  if (!response.ok) return null;
  const session = await response.json();
  csrfToken = session.csrfToken || '';
  return session.signedIn ? session : null;
}

// The CSRF token of the session.
export function csrf() {
  return csrfToken;
}

// A failed request: `message` in plain words, the problem's `code` and `field`.
export class ApiError extends Error {
  constructor(status, problem) {
    super(plainWords(status, problem));
    this.status = status;
    this.code = problem.code || '';
    this.field = problem.field || '';
    this.detail = problem.detail || '';
  }
}

const WORDS = {
  unauthenticated: 'Please sign in first.',
  forbidden: 'You are not allowed to do that.',
  csrf: 'Your session changed in another tab. Reload the page and try again.',
  'not-found': 'It is not there any more, or you may not see it.',
  'instance-limit': 'You have reached the number of instances you may run. Terminate one first.',
  'drive-unavailable': 'Storage is not available right now. Try again in a minute.',
  'bundle-too-large': 'The bundle is too large.',
  'app-exists': 'This app already has this version in the store. Raise the version in app.toml.',
  internal: 'Something went wrong on the server. Try again; if it keeps happening, tell an administrator.',
};

// Codes whose own words are better than the server's detail.
const OURS = new Set(['unauthenticated', 'csrf', 'not-found', 'internal', 'drive-unavailable']);

function plainWords(status, problem) {
  const code = problem.code || '';
  if (OURS.has(code)) return WORDS[code];
  if (problem.detail) return sentence(problem.detail);
  return WORDS[code] || `The request failed (HTTP ${status}).`;
}

// `text` as a sentence: a capital first letter (unless it starts with a file or field name
// such as app.toml) and a full stop.
export function sentence(text) {
  const t = String(text).trim();
  const first = t.split(/[\s:]/)[0];
  const start = /[./_[]/.test(first) ? t : t.charAt(0).toUpperCase() + t.slice(1);
  return start + (/[.!?]$/.test(t) ? '' : '.');
}

const OFFLINE = 'The App Store cannot be reached. Check your connection and try again.';

// The problem in a failed response.
async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return {};
  }
}

// Sends `method path` (JSON `json` if given); the JSON answer, `null` for none.
export async function api(method, path, json) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin' };
  if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken;
  if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { detail: OFFLINE });
  }
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (response.status === 204) return null;
  const type = response.headers.get('content-type') || '';
  return type.includes('json') ? response.json() : response.text();
}

// Every app the filter `params` matches, following the pages.
export async function allApps(params = {}) {
  const apps = [];
  let token = '';
  for (let page = 0; page < 20; page++) {
    const q = new URLSearchParams({ ...params, pageSize: '500' });
    if (token) q.set('pageToken', token);
    const body = await api('GET', `/api/v1/apps?${q}`);
    apps.push(...body.apps);
    if (!body.nextPageToken) break;
    token = body.nextPageToken;
  }
  return apps;
}

// Uploads a bundle file; `onProgress(sent, total)` as it goes. The imported app.
export function importBundle(file, visibility, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/v1/apps?visibility=${encodeURIComponent(visibility)}`);
    xhr.setRequestHeader('X-CSRF-Token', csrfToken);
    xhr.setRequestHeader('Content-Type', 'application/zip');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size));
    xhr.upload.addEventListener('load', () => onProgress(file.size, file.size));
    xhr.addEventListener('error', () => reject(new ApiError(0, { detail: OFFLINE })));
    xhr.addEventListener('load', () => {
      let body = {};
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = {};
      }
      if (xhr.status === 201) resolve(body);
      else reject(new ApiError(xhr.status, body));
    });
    xhr.send(file);
  });
}

// Signs out and goes to the catalogue.
export async function signOut() {
  try {
    await fetch('/auth/logout', {
      method: 'POST',
      headers: { 'X-CSRF-Token': csrfToken },
      credentials: 'same-origin',
      redirect: 'manual',
    });
  } finally {
    location.assign('/');
  }
}
