// The symbol picker: an ARIA 1.2 combobox with type-ahead over GET /symbols.
//
// Keyboard: type to filter (symbol prefix first, then names), ↓/↑ to move through the
// matches, Enter to add the highlighted one (or what was typed: "AAPL, MSFT" adds both),
// Escape to close the list, then to clear the field.

const MAX_OPTIONS = 8;

export function createPicker({ form, input, list, hint, symbols, isAdded, onAdd }) {
  let matches = [];
  let active = -1;

  function search(text) {
    const q = text.trim().toUpperCase();
    if (!q) return symbols.slice(0, MAX_OPTIONS);
    const ranked = [];
    for (const s of symbols) {
      const code = s.symbol;
      const name = s.name.toUpperCase();
      let rank = -1;
      if (code === q) rank = 0;
      else if (code.startsWith(q)) rank = 1;
      else if (name.startsWith(q)) rank = 2;
      else if (code.includes(q)) rank = 3;
      else if (name.includes(q)) rank = 4;
      if (rank >= 0) ranked.push([rank, s]);
    }
    ranked.sort((a, b) => a[0] - b[0] || a[1].symbol.localeCompare(b[1].symbol));
    return ranked.slice(0, MAX_OPTIONS).map((r) => r[1]);
  }

  function open(text) {
    matches = search(text);
    active = matches.findIndex((s) => !isAdded(s.symbol));
    if (!text.trim()) active = -1;
    list.replaceChildren(
      ...matches.map((s, i) => {
        const li = document.createElement('li');
        li.id = `picker-opt-${i}`;
        li.setAttribute('role', 'option');
        li.dataset.symbol = s.symbol;
        const added = isAdded(s.symbol);
        if (added) li.setAttribute('aria-disabled', 'true');
        const code = document.createElement('span');
        code.className = 'opt-code';
        code.textContent = s.symbol;
        const name = document.createElement('span');
        name.className = 'opt-name';
        name.textContent = s.name;
        li.append(code, name);
        if (added) {
          const tag = document.createElement('span');
          tag.className = 'opt-tag';
          tag.textContent = 'added';
          li.append(tag);
        }
        return li;
      }),
    );
    if (matches.length === 0) {
      const li = document.createElement('li');
      li.className = 'opt-none';
      li.textContent = `No symbol matches “${text.trim()}”`;
      list.append(li);
    }
    list.hidden = false;
    input.setAttribute('aria-expanded', 'true');
    highlight(active);
  }

  function close() {
    list.hidden = true;
    input.setAttribute('aria-expanded', 'false');
    input.removeAttribute('aria-activedescendant');
    active = -1;
  }

  function highlight(i) {
    active = i;
    for (const [k, li] of [...list.children].entries()) li.setAttribute('aria-selected', String(k === i));
    if (i >= 0 && list.children[i]) {
      input.setAttribute('aria-activedescendant', list.children[i].id);
      list.children[i].scrollIntoView({ block: 'nearest' });
    } else {
      input.removeAttribute('aria-activedescendant');
    }
  }

  function say(text) { hint.textContent = text; }

  function add(symbol) {
    if (isAdded(symbol)) {
      say(`${symbol} is already in the watchlist.`);
      return false;
    }
    onAdd(symbol);
    say(`Added ${symbol}.`);
    return true;
  }

  /** Adds what was typed: one or more symbols separated by commas or spaces. */
  function addTyped() {
    const wanted = input.value.split(/[\s,]+/).map((s) => s.trim().toUpperCase()).filter(Boolean);
    if (wanted.length === 0) return;
    const known = new Map(symbols.map((s) => [s.symbol, s]));
    const unknown = wanted.filter((w) => !known.has(w));
    if (wanted.length === 1 && unknown.length === 1) {
      // Not an exact symbol: take the single best match if there is one.
      const best = search(wanted[0]).filter((s) => !isAdded(s.symbol));
      if (best.length === 1 || (best.length > 0 && best[0].symbol.startsWith(wanted[0]))) {
        if (add(best[0].symbol)) { input.value = ''; close(); }
        return;
      }
      say(`No symbol matches “${wanted[0]}”.`);
      return;
    }
    const added = wanted.filter((w) => known.has(w) && !isAdded(w));
    for (const w of added) onAdd(w);
    const parts = [];
    if (added.length) parts.push(`Added ${added.join(', ')}.`);
    if (unknown.length) parts.push(`Unknown: ${unknown.join(', ')}.`);
    if (!added.length && !unknown.length) parts.push('Already in the watchlist.');
    say(parts.join(' '));
    if (!unknown.length) { input.value = ''; close(); }
  }

  input.addEventListener('input', () => open(input.value));
  input.addEventListener('focus', () => { if (input.value.trim()) open(input.value); });
  input.addEventListener('blur', () => setTimeout(close, 120));
  input.addEventListener('keydown', (e) => {
    const n = matches.length;
    switch (e.key) {
      case 'ArrowDown':
        e.preventDefault();
        if (list.hidden) open(input.value);
        else if (n) highlight((active + 1) % n);
        break;
      case 'ArrowUp':
        e.preventDefault();
        if (list.hidden) open(input.value);
        else if (n) highlight(active <= 0 ? n - 1 : active - 1);
        break;
      case 'Enter':
        if (!list.hidden && active >= 0 && matches[active]) {
          e.preventDefault();
          if (add(matches[active].symbol)) { input.value = ''; close(); }
        }
        break; // otherwise the form submits
      case 'Escape':
        if (!list.hidden) close();
        else input.value = '';
        break;
      default:
    }
  });
  // pointerdown would blur the input and close the list before the click lands.
  list.addEventListener('pointerdown', (e) => e.preventDefault());
  list.addEventListener('click', (e) => {
    const li = e.target.closest('li[role="option"]');
    if (!li) return;
    if (add(li.dataset.symbol)) { input.value = ''; close(); }
    input.focus();
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    addTyped();
  });

  return { close, refresh: () => { if (!list.hidden) open(input.value); } };
}
