// My instances (all of them for an admin, at /instances?all): live status from the
// launcher's phases, open, logs that follow, suspend, resume, visibility, terminate.

import { api } from './api.js';
import { add, h, isWebUrl, notice, visibilitySelect } from './dom.js';

// What each phase means to the person waiting.
const PHASES = {
  PENDING: 'Scheduling',
  SOURCING: 'Fetching the app',
  INSTALLING: 'Installing dependencies',
  STARTING: 'Starting',
  RUNNING: 'Running',
  FAILED: 'Failed',
  SUSPENDED: 'Suspended',
};

const POLL_MS = 2000;
const LOG_LIMIT = 200_000;

// A log viewer for instance `id` that follows the log until closed.
function logViewer(id, title) {
  const pre = h('pre', { class: 'log', tabindex: 0, 'aria-label': `Log of ${title}` });
  const state = h('p', { class: 'muted small', 'aria-live': 'polite' }, 'Connecting…');
  const controller = new AbortController();
  const box = h('div', { class: 'log-box' }, state, pre);
  (async () => {
    try {
      const response = await fetch(`/api/v1/instances/${encodeURIComponent(id)}/logs?follow=true`, {
        credentials: 'same-origin', signal: controller.signal,
      });
      if (!response.ok) {
        state.replaceChildren(notice('error', 'The log is not available.'));
        return;
      }
      state.textContent = 'Following the log…';
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
        pre.textContent = (pre.textContent + value).slice(-LOG_LIMIT);
        if (atEnd) pre.scrollTop = pre.scrollHeight;
      }
      state.textContent = 'The log ended.';
    } catch (e) {
      if (e.name !== 'AbortError') state.replaceChildren(notice('error', 'The log stream broke off. Close it and open it again.'));
    }
  })();
  return { box, close: () => controller.abort() };
}

// One instance's card, updated in place as its status changes.
function instanceCard(inst, showOwner, onGone) {
  const title = inst.appTitle || inst.appName;
  const phase = h('span', { class: 'phase' });
  const reason = h('p', { class: 'reason' });
  const message = h('div', { 'aria-live': 'polite' });
  const open = h('a', { class: 'button', target: '_blank', rel: 'noopener' }, 'Open');
  const suspend = h('button', { type: 'button', class: 'secondary' }, 'Suspend');
  const resume = h('button', { type: 'button', class: 'secondary' }, 'Resume');
  const logs = h('button', { type: 'button', class: 'secondary', 'aria-expanded': 'false' }, 'Logs');
  const terminate = h('button', { type: 'button', class: 'danger' }, 'Terminate');
  const visId = `visibility-${inst.id}`;
  let current = inst;
  const select = visibilitySelect(visId, inst.visibility, async () => {
    await act(() => api('PATCH', `/api/v1/instances/${encodeURIComponent(current.id)}`, { visibility: select.value }), 'Visibility changed.');
  });
  const logSlot = h('div');
  let viewer = null;
  const act = async (call, done) => {
    message.replaceChildren();
    try {
      const updated = await call();
      if (updated) update(updated);
      if (done) message.replaceChildren(notice('ok', done));
      return true;
    } catch (e) {
      message.replaceChildren(notice('error', e.message));
      select.value = current.visibility;
      return false;
    }
  };
  suspend.addEventListener('click', () => act(() => api('POST', `/api/v1/instances/${encodeURIComponent(current.id)}/suspend`), 'Suspended.'));
  resume.addEventListener('click', () => act(() => api('POST', `/api/v1/instances/${encodeURIComponent(current.id)}/resume`), 'Resuming.'));
  logs.addEventListener('click', () => {
    if (viewer) {
      viewer.close();
      viewer = null;
      logSlot.replaceChildren();
      logs.setAttribute('aria-expanded', 'false');
    } else {
      viewer = logViewer(current.id, title);
      logSlot.replaceChildren(viewer.box);
      logs.setAttribute('aria-expanded', 'true');
    }
  });
  const confirmBox = h('span', { class: 'confirm', hidden: true },
    h('span', {}, 'Terminate for good? Its data goes too. '),
    h('button', { type: 'button', class: 'danger', onclick: async () => {
      const ok = await act(() => api('DELETE', `/api/v1/instances/${encodeURIComponent(current.id)}`));
      if (ok) {
        if (viewer) viewer.close();
        onGone(current.id);
      }
    } }, 'Yes, terminate'),
    h('button', { type: 'button', class: 'secondary', onclick: () => {
      confirmBox.hidden = true;
      terminate.hidden = false;
      terminate.focus();
    } }, 'Cancel'));
  terminate.addEventListener('click', () => {
    terminate.hidden = true;
    confirmBox.hidden = false;
    confirmBox.querySelector('button').focus();
  });
  const el = h('li', { class: 'instance', id: inst.id, 'data-instance': inst.id },
    h('div', { class: 'instance-head' },
      h('h2', {}, h('a', { href: `/apps/${encodeURIComponent(inst.appId)}`, text: title })),
      phase),
    h('p', { class: 'muted small', text: `${inst.appName} ${inst.appVersion} · started ${new Date(inst.createdAt).toLocaleString()}${showOwner ? ` · owner ${inst.owner}` : ''}` }),
    reason,
    h('div', { class: 'actions' }, open, suspend, resume, logs, terminate, confirmBox),
    h('div', { class: 'field inline' }, h('label', { for: visId }, 'Who may open it'), select),
    message, logSlot);
  const update = (i) => {
    current = i;
    const p = i.status?.phase || 'PENDING';
    el.dataset.phase = p;
    phase.className = `phase phase-${p.toLowerCase()}`;
    phase.textContent = PHASES[p] || p;
    const why = i.status?.reason || (p === 'FAILED' ? i.status?.lastFailure : '') || '';
    reason.textContent = p === 'FAILED' && why ? `Why: ${why}` : (p !== 'RUNNING' && p !== 'SUSPENDED' && why ? why : '');
    reason.hidden = !reason.textContent;
    if (i.url && isWebUrl(i.url)) open.setAttribute('href', i.url);
    open.hidden = p !== 'RUNNING';
    suspend.hidden = i.suspended;
    resume.hidden = !i.suspended;
    if (document.activeElement !== select) select.value = i.visibility;
  };
  update(inst);
  return { el, update };
}

// The instances page into `main`.
export async function instances(main, session) {
  const all = new URLSearchParams(location.search).has('all');
  main.replaceChildren(h('h1', {}, all ? 'All instances' : 'My instances'));
  if (!session) {
    main.append(notice('info', 'Sign in to see your instances.'));
    return;
  }
  if (all && !session.admin) {
    main.append(notice('error', 'Only administrators see every instance.'));
    return;
  }
  const list = h('ul', { class: 'instances', id: 'instances' });
  const empty = h('p', { class: 'muted', hidden: true }, 'No instances. Launch an app from the ', h('a', { href: '/' }, 'catalogue'), '.');
  const trouble = h('div', { 'aria-live': 'polite' });
  add(main, [
    session.admin ? h('p', {}, all ? h('a', { href: '/instances' }, 'Only mine') : h('a', { href: '/instances?all' }, 'See every instance')) : null,
    trouble, empty, list]);
  const cards = new Map();
  const gone = (id) => {
    cards.get(id)?.el.remove();
    cards.delete(id);
    empty.hidden = cards.size > 0;
  };
  const poll = async () => {
    try {
      const body = await api('GET', `/api/v1/instances${all ? '?all=true' : ''}`);
      trouble.replaceChildren();
      const seen = new Set();
      for (const inst of body.instances) {
        seen.add(inst.id);
        const card = cards.get(inst.id);
        if (card) card.update(inst);
        else {
          const c = instanceCard(inst, all, gone);
          cards.set(inst.id, c);
          list.prepend(c.el);
        }
      }
      for (const id of [...cards.keys()]) if (!seen.has(id)) gone(id);
      empty.hidden = cards.size > 0;
    } catch (e) {
      trouble.replaceChildren(notice('error', e.message));
    }
  };
  await poll();
  if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  setInterval(poll, POLL_MS);
}
