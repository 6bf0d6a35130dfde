// The catalogue (search, tags as filters, the newest version of each app as a card), the
// bundle import by drag-and-drop, and the admin's list of every app.

import { api, allApps, importBundle, sentence } from './api.js';
import { add, h, notice, size, when, visibilitySelect, VISIBILITY } from './dom.js';

const DEFAULT_ICON = document.querySelector('link[rel="icon"]')?.getAttribute('href') || '';

// Compares versions like 1.10.0 and 1.9.2 by their numbers.
export function compareVersions(a, b) {
  const pa = String(a).split(/[.+-]/);
  const pb = String(b).split(/[.+-]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? '';
    const y = pb[i] ?? '';
    const nx = Number(x);
    const ny = Number(y);
    const c = x !== '' && y !== '' && !Number.isNaN(nx) && !Number.isNaN(ny) ? nx - ny : x.localeCompare(y);
    if (c) return c;
  }
  return 0;
}

// The newest version of each app name.
function newest(apps) {
  const by = new Map();
  for (const app of apps) {
    const seen = by.get(app.name);
    if (!seen || compareVersions(app.version, seen.version) > 0) by.set(app.name, app);
  }
  return [...by.values()].sort((a, b) => (a.title || a.name).localeCompare(b.title || b.name));
}

// The app's icon, or the store's when it has none.
export function icon(app, px) {
  return h('img', { class: 'icon', src: app.iconUrl || DEFAULT_ICON, alt: '', width: px, height: px, loading: 'lazy' });
}

// A tag as a small label.
export function tagLabel(name) {
  return h('span', { class: 'tag' }, name);
}

function card(app) {
  return h('li', { class: 'card', 'data-app': app.name },
    h('a', { class: 'card-link', href: `/apps/${encodeURIComponent(app.id)}` },
      icon(app, 56),
      h('span', { class: 'card-text' },
        h('span', { class: 'card-title', text: app.title || app.name }),
        h('span', { class: 'muted small', text: `${app.name} · ${app.version}` }),
        h('span', { class: 'card-desc', text: app.description || '' }))),
    app.tags.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' }, app.tags.map((t) => h('li', {}, tagLabel(t)))) : null);
}

// What an import error says about its field, without repeating the field's name.
function fieldMessage(e) {
  const at = e.field ? e.detail.indexOf(`${e.field}: `) : -1;
  return at < 0 ? e.message : sentence(e.detail.slice(at + e.field.length + 2));
}

// The import panel: a drop zone, a file button, visibility, progress and errors.
function importer(session, onImported) {
  const status = h('div', { class: 'import-status', 'aria-live': 'polite' });
  const progress = h('progress', { max: 100, value: 0, hidden: true, 'aria-label': 'Upload progress' });
  const visibility = visibilitySelect('import-visibility', 'PRIVATE');
  const input = h('input', { type: 'file', id: 'bundle-file', accept: '.wave,.zip,application/zip', class: 'sr' });
  const send = async (file) => {
    if (!file) return;
    progress.hidden = false;
    progress.value = 0;
    status.replaceChildren(h('p', { text: `Uploading ${file.name} (${size(file.size)})…` }));
    try {
      const app = await importBundle(file, visibility.value, (sent, total) => {
        const pct = total ? Math.round((sent / total) * 100) : 0;
        progress.value = pct;
        progress.textContent = `${pct}%`;
        if (sent >= total) status.replaceChildren(h('p', { text: 'Uploaded. Checking the bundle…' }));
      });
      progress.hidden = true;
      status.replaceChildren(notice('ok', 'Imported ',
        h('a', { href: `/apps/${encodeURIComponent(app.id)}`, text: `${app.title || app.name} ${app.version}` }), '.'));
      onImported(app);
    } catch (e) {
      progress.hidden = true;
      status.replaceChildren(notice('error',
        h('p', { text: `${file.name} was not imported.` }),
        h('dl', { class: 'field-errors' },
          h('dt', { text: e.field || 'Bundle' }),
          h('dd', { text: fieldMessage(e) }))));
    }
  };
  input.addEventListener('change', () => {
    send(input.files[0]);
    input.value = '';
  });
  const zone = h('div', { class: 'dropzone', id: 'dropzone' },
    h('p', {}, h('strong', {}, 'Drop an app bundle here'), ' (a .wave or .zip file), or '),
    h('label', { for: 'bundle-file', class: 'button', tabindex: 0, role: 'button' }, 'Choose a file…'),
    input);
  const label = zone.querySelector('label');
  label.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' || e.key === ' ') {
      e.preventDefault();
      input.click();
    }
  });
  zone.addEventListener('dragover', (e) => {
    e.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (e) => {
    e.preventDefault();
    zone.classList.remove('over');
    send(e.dataTransfer.files[0]);
  });
  return h('section', { class: 'panel', 'aria-labelledby': 'import-title' },
    h('h2', { id: 'import-title' }, 'Import an app'),
    h('p', { class: 'muted' }, 'Owner: ', h('strong', { text: session.username })),
    h('div', { class: 'field' }, h('label', { for: 'import-visibility' }, 'Who may see it'), visibility),
    zone, progress, status);
}

// The catalogue into `main`.
export async function catalogue(main, session) {
  const params = new URLSearchParams(location.search);
  const state = { q: params.get('q') || '', tag: params.get('tag') || '' };
  const search = h('input', { type: 'search', id: 'search', value: state.q, placeholder: 'Name, title or description', autocomplete: 'off' });
  const tagBar = h('div', { class: 'tag-filter', role: 'group', 'aria-label': 'Filter by tag' });
  const list = h('ul', { class: 'cards', id: 'apps', 'aria-live': 'polite' });
  const count = h('p', { class: 'muted', id: 'count', 'aria-live': 'polite' });
  main.replaceChildren();
  add(main, [
    h('h1', {}, 'Apps'),
    h('form', { class: 'search', role: 'search', onsubmit: (e) => e.preventDefault() },
      h('label', { for: 'search' }, 'Search apps'), search),
    tagBar, count, list,
    session?.fullAccess ? importer(session, () => refresh(true)) : null,
    session ? null : h('p', { class: 'muted' }, 'Sign in to see more apps, import your own and launch them.')]);

  const tagButtons = (tags) => {
    tagBar.replaceChildren(...[['', 'All'], ...tags.map((t) => [t, t])].map(([name, label]) => h('button', {
      type: 'button', class: 'chip', 'aria-pressed': String(state.tag === name), 'data-tag': name,
      onclick: () => {
        state.tag = name;
        for (const b of tagBar.querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.tag === name));
        refresh(false);
      },
    }, label)));
  };

  let generation = 0;
  const refresh = async (tagsToo) => {
    const mine = ++generation;
    const q = new URLSearchParams();
    if (state.q) q.set('q', state.q);
    if (state.tag) q.set('tag', state.tag);
    history.replaceState(null, '', q.toString() ? `/?${q}` : '/');
    try {
      if (tagsToo) {
        const every = await allApps();
        const tags = [...new Set(every.flatMap((a) => a.tags))].sort();
        if (state.tag && !tags.includes(state.tag)) tags.push(state.tag);
        tagButtons(tags);
      }
      const filter = {};
      if (state.q) filter.q = state.q;
      if (state.tag) filter.tag = state.tag;
      const apps = newest(await allApps(filter));
      if (mine !== generation) return;
      list.replaceChildren(...apps.map(card));
      count.textContent = apps.length === 1 ? '1 app' : `${apps.length} apps`;
      if (!apps.length) list.replaceChildren(h('li', { class: 'empty' }, state.q || state.tag ? 'No app matches.' : 'No apps yet.'));
    } catch (e) {
      if (mine === generation) list.replaceChildren(h('li', {}, notice('error', e.message)));
    }
  };
  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      state.q = search.value.trim();
      refresh(false);
    }, 250);
  });
  await refresh(true);
}

// The admin's view of every app into `main`.
export async function admin(main, session) {
  main.replaceChildren(h('h1', {}, 'Administration'));
  if (!session?.admin) {
    main.append(notice('error', 'This page is for administrators.'));
    return;
  }
  const apps = (await allApps()).sort((a, b) => a.name.localeCompare(b.name) || compareVersions(a.version, b.version));
  const status = h('div', { 'aria-live': 'polite' });
  const row = (app) => {
    const id = `vis-${app.id}`;
    const select = visibilitySelect(id, app.visibility, async () => {
      try {
        await api('PATCH', `/api/v1/apps/${encodeURIComponent(app.id)}`, { visibility: select.value });
        status.replaceChildren(notice('ok', `${app.name} ${app.version}: ${VISIBILITY[select.value]}.`));
      } catch (e) {
        select.value = app.visibility;
        status.replaceChildren(notice('error', e.message));
      }
    });
    return h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: `/apps/${encodeURIComponent(app.id)}`, text: app.title || app.name }),
        h('div', { class: 'muted small', text: app.name })),
      h('td', { 'data-label': 'Version', text: app.version }),
      h('td', { 'data-label': 'Owner', text: app.owner }),
      h('td', { 'data-label': 'Visibility' }, h('label', { for: id, class: 'sr' }, `Visibility of ${app.name} ${app.version}`), select),
      h('td', { 'data-label': 'Imported', text: when(app.createdAt) }));
  };
  main.append(
    h('p', {}, h('a', { href: '/instances?all' }, 'See every instance')),
    h('h2', {}, `All apps (${apps.length})`),
    status,
    h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['App', 'Version', 'Owner', 'Visibility', 'Imported'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, apps.map(row))));
}
