// The Runs panel of the left sidebar (#nnmodes-runs): one .nnmodes-run row per run file under the
// server's root (data-path relative to the root, data-status "running" / "finished" /
// "interrupted", or "unreadable" with the reason in place of the steps), refreshed every
// REFRESH_MS while the panel is shown. Click selects (ctrl/cmd
// click toggles, shift click selects a range), double-click or Enter opens, Compare compares the
// selected runs in the order they were selected.
import { Widget } from '@lumino/widgets';

import { fetchRuns } from './api';
import { runIcon } from './icon';

export const REFRESH_MS = 3000;

/** "12 s ago", "3 min ago", "5 h ago", else the date; `now` and `then` in unix seconds. */
export function age(now, then) {
  if (typeof then !== 'number') {
    return '';
  }
  const s = Math.max(0, now - then);
  if (s < 60) {
    return `${Math.round(s)} s ago`;
  }
  if (s < 3600) {
    return `${Math.round(s / 60)} min ago`;
  }
  if (s < 86400) {
    return `${Math.round(s / 3600)} h ago`;
  }
  return new Date(then * 1000).toLocaleDateString();
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  el.className = className;
  if (text !== undefined) {
    el.textContent = text;
  }
  return el;
}

export class RunsPanel extends Widget {
  /** `open(paths)`: open one run (a path) or compare several. */
  constructor({ open }) {
    super();
    this.id = 'nnmodes-runs';
    this.addClass('nnmodes-runs-panel');
    this.title.icon = runIcon;
    this.title.caption = 'nnmodes runs';
    this._open = open;
    this._rows = new Map(); // path -> <li>
    this._order = []; // paths as shown
    this._selected = new Set(); // in the order selected
    this._anchor = null; // shift-click ranges start here
    this._timer = null;
    this._busy = false;

    const header = element('div', 'nnmodes-runs-header');
    header.append(element('span', 'nnmodes-runs-title', 'Runs'));
    this._compare = element('button', 'jp-Button jp-mod-styled nnmodes-runs-compare', 'Compare');
    this._compare.title = 'Compare the selected runs (select several with ctrl/shift click)';
    this._compare.disabled = true;
    this._compare.addEventListener('click', () => this._openSelected());
    const refresh = element('button', 'jp-Button jp-mod-styled jp-mod-minimal nnmodes-runs-refresh', '⟳');
    refresh.title = 'Refresh';
    refresh.addEventListener('click', () => void this.refresh());
    header.append(this._compare, refresh);
    this._list = element('ul', 'nnmodes-runs-list');
    this._list.setAttribute('role', 'listbox');
    this._list.setAttribute('aria-multiselectable', 'true');
    this._message = element('div', 'nnmodes-runs-message', 'Loading…');
    this.node.append(header, this._list, this._message);
    this._list.addEventListener('click', event => this._onClick(event));
    this._list.addEventListener('dblclick', event => this._onDblClick(event));
    this._list.addEventListener('keydown', event => this._onKeyDown(event));
  }

  /** Read the listing again and show it. */
  async refresh() {
    if (this._busy) {
      return;
    }
    this._busy = true;
    try {
      this._render(await fetchRuns(''));
    } catch (error) {
      this._message.textContent = `Could not list the runs: ${error.message || error}`;
    } finally {
      this._busy = false;
    }
  }

  onAfterShow() {
    void this.refresh();
    if (this._timer === null) {
      this._timer = window.setInterval(() => void this.refresh(), REFRESH_MS);
    }
  }

  onAfterHide() {
    this._stop();
  }

  onAfterAttach() {
    if (this.isVisible) {
      this.onAfterShow();
    }
  }

  onBeforeDetach() {
    this._stop();
  }

  dispose() {
    this._stop();
    super.dispose();
  }

  _stop() {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  // Rows are kept per path and updated in place, so a refresh never replaces the row being
  // clicked (a double-click spans two clicks).
  _render(listing) {
    const seen = new Set();
    listing.runs.forEach((run, index) => {
      seen.add(run.path);
      let row = this._rows.get(run.path);
      if (!row) {
        row = this._createRow(run);
        this._rows.set(run.path, row);
      }
      this._updateRow(row, run, listing.now);
      if (this._list.children[index] !== row) {
        this._list.insertBefore(row, this._list.children[index] || null);
      }
    });
    for (const [path, row] of this._rows) {
      if (!seen.has(path)) {
        row.remove();
        this._rows.delete(path);
        this._selected.delete(path);
      }
    }
    this._order = listing.runs.map(run => run.path);
    const count = listing.runs.length;
    this._message.textContent = count
      ? `${count} run${count === 1 ? '' : 's'}${listing.truncated ? ' (the listing stops at the first folders)' : ''}`
      : 'No run files (.nnmodes) under this folder.';
    this._syncSelection();
  }

  _createRow(run) {
    const row = element('li', 'nnmodes-run');
    row.dataset.path = run.path;
    row.tabIndex = 0;
    row.setAttribute('role', 'option');
    const top = element('div', 'nnmodes-run-top');
    top.append(element('span', 'nnmodes-run-name'), element('span', 'nnmodes-run-status'));
    const bottom = element('div', 'nnmodes-run-bottom');
    bottom.append(element('span', 'nnmodes-run-steps'), element('span', 'nnmodes-run-updated'));
    row.append(top, element('div', 'nnmodes-run-folder'), bottom);
    return row;
  }

  _updateRow(row, run, now) {
    const folder = run.path.includes('/') ? run.path.slice(0, run.path.lastIndexOf('/')) : '';
    const unreadable = run.status === 'unreadable';
    row.dataset.status = run.status;
    row.title = unreadable
      ? `${run.path}\nnot readable as a run: ${run.error}`
      : `${run.path}${run.model ? `\nmodel: ${run.model}` : ''}\ndouble-click to open`;
    row.querySelector('.nnmodes-run-name').textContent = run.name;
    row.querySelector('.nnmodes-run-status').textContent = run.status;
    row.querySelector('.nnmodes-run-folder').textContent = folder ? `${folder}/` : '';
    row.querySelector('.nnmodes-run-steps').textContent = unreadable ? run.error : `step ${run.steps}`;
    const updated = row.querySelector('.nnmodes-run-updated');
    updated.textContent = age(now, run.updated);
    updated.title = typeof run.updated === 'number' ? new Date(run.updated * 1000).toLocaleString() : '';
  }

  _rowOf(event) {
    const row = event.target.closest('.nnmodes-run');
    return row && this._list.contains(row) ? row : null;
  }

  _onClick(event) {
    const row = this._rowOf(event);
    if (!row) {
      return;
    }
    const path = row.dataset.path;
    if (event.shiftKey && this._anchor !== null && this._order.includes(this._anchor)) {
      const [a, b] = [this._order.indexOf(this._anchor), this._order.indexOf(path)].sort((x, y) => x - y);
      if (!(event.ctrlKey || event.metaKey)) {
        this._selected.clear();
      }
      this._order.slice(a, b + 1).forEach(p => this._selected.add(p));
    } else if (event.ctrlKey || event.metaKey) {
      if (!this._selected.delete(path)) {
        this._selected.add(path);
      }
      this._anchor = path;
    } else {
      this._selected = new Set([path]);
      this._anchor = path;
    }
    this._syncSelection();
  }

  _onDblClick(event) {
    const row = this._rowOf(event);
    if (row) {
      this._selected = new Set([row.dataset.path]);
      this._syncSelection();
      void this._open([row.dataset.path]);
    }
  }

  _onKeyDown(event) {
    if (event.key === 'Enter' && this._selected.size) {
      event.preventDefault();
      this._openSelected();
    }
  }

  _openSelected() {
    const paths = [...this._selected];
    if (paths.length) {
      void this._open(paths);
    }
  }

  _syncSelection() {
    for (const [path, row] of this._rows) {
      const on = this._selected.has(path);
      row.classList.toggle('jp-mod-selected', on);
      row.setAttribute('aria-selected', String(on));
    }
    this._compare.disabled = this._selected.size < 2;
  }
}
