// An app's page: icon, title, description, the long description rendered from Markdown,
// screenshots, its versions, and the button that launches it.

import { api, allApps } from './api.js';
import { add, h, notice, size, when, VISIBILITY } from './dom.js';
import { markdown } from './markdown.js';
import { compareVersions, icon, tagLabel } from './catalogue.js';

// The app page of app `id` into `main`.
export async function appPage(main, session, id) {
  const app = await api('GET', `/api/v1/apps/${encodeURIComponent(id)}`);
  document.title = `${app.title || app.name} · App Store`;
  const status = h('div', { 'aria-live': 'polite', class: 'launch-status' });
  const launch = h('button', { type: 'button', id: 'launch' }, 'Launch');
  launch.addEventListener('click', async () => {
    launch.disabled = true;
    status.replaceChildren(h('p', { text: 'Starting an instance…' }));
    try {
      const inst = await api('POST', `/api/v1/apps/${encodeURIComponent(app.id)}/instances`, {});
      location.assign(`/instances#${encodeURIComponent(inst.id)}`);
    } catch (e) {
      launch.disabled = false;
      status.replaceChildren(notice('error', e.message));
    }
  });
  const about = h('section', { class: 'long-description', 'aria-label': 'About this app' });
  const versions = h('tbody');
  main.replaceChildren();
  add(main, [
    h('p', {}, h('a', { href: '/' }, '← All apps')),
    h('div', { class: 'app-head' },
      icon(app, 96),
      h('div', {},
        h('h1', { text: app.title || app.name }),
        h('p', { class: 'muted', text: `${app.name} · version ${app.version} · by ${app.owner}` }),
        h('p', { class: 'lead', text: app.description || '' }),
        app.tags.length ? h('ul', { class: 'tags', 'aria-label': 'Tags' }, app.tags.map((t) => h('li', {}, h('a', { href: `/?tag=${encodeURIComponent(t)}` }, tagLabel(t))))) : null,
        session ? launch : h('a', { class: 'button', href: `/auth/login?returnTo=${encodeURIComponent(location.pathname)}` }, 'Sign in to launch'),
        status)),
    about,
    app.screenshotUrls.length ? h('section', { 'aria-labelledby': 'shots' },
      h('h2', { id: 'shots' }, 'Screenshots'),
      h('ul', { class: 'screenshots' }, app.screenshotUrls.map((url, i) => h('li', {},
        h('a', { href: url, target: '_blank', rel: 'noopener' },
          h('img', { src: url, alt: `Screenshot ${i + 1} of ${app.title || app.name}`, loading: 'lazy' })))))) : null,
    h('section', { 'aria-labelledby': 'versions' },
      h('h2', { id: 'versions' }, 'Versions'),
      h('table', { class: 'grid' },
        h('thead', {}, h('tr', {}, ['Version', 'Visibility', 'Size', 'Imported'].map((c) => h('th', { scope: 'col' }, c)))),
        versions)),
    h('section', { 'aria-labelledby': 'details' },
      h('h2', { id: 'details' }, 'Details'),
      h('dl', { class: 'details' },
        h('dt', {}, 'Owner'), h('dd', { text: app.owner }),
        h('dt', {}, 'Visibility'), h('dd', { text: VISIBILITY[app.visibility] || app.visibility }),
        h('dt', {}, 'Bundle'), h('dd', { text: `${size(app.bundleSize)}, SHA-256 ${app.bundleSha256}` }),
        h('dt', {}, 'Imported'), h('dd', { text: when(app.createdAt) })))]);
  if (app.hasLongDescription) {
    try {
      const text = await api('GET', `/api/v1/apps/${encodeURIComponent(app.id)}/long-description`);
      about.replaceChildren(markdown(text));
    } catch (e) {
      about.replaceChildren(notice('error', e.message));
    }
  }
  try {
    const all = (await allApps({ name: app.name })).sort((a, b) => compareVersions(b.version, a.version));
    versions.replaceChildren(...all.map((v) => h('tr', { 'aria-current': v.id === app.id ? 'true' : null },
      h('td', { 'data-label': 'Version' }, v.id === app.id ? h('strong', { text: `${v.version} (this one)` })
        : h('a', { href: `/apps/${encodeURIComponent(v.id)}`, text: v.version })),
      h('td', { 'data-label': 'Visibility', text: VISIBILITY[v.visibility] || v.visibility }),
      h('td', { 'data-label': 'Size', text: size(v.bundleSize) }),
      h('td', { 'data-label': 'Imported', text: when(v.createdAt) }))));
  } catch (e) {
    versions.replaceChildren(h('tr', {}, h('td', { colspan: 4 }, notice('error', e.message))));
  }
}
