// Nimbus dashboard: live lists and panels (Server-Sent Events), and the
// job log viewer (virtualised rows, ANSI colours, folded steps, line
// links, search). No framework, no build step; served from the binary.
'use strict';

// init runs once the whole file is read (the script is deferred).
function init() {
  // Buttons that ask first.
  document.addEventListener('click', function (e) {
    var b = e.target.closest('[data-confirm]');
    if (b && !window.confirm(b.dataset.confirm)) e.preventDefault();
  });
  // The org switcher submits when changed.
  document.addEventListener('change', function (e) {
    if (e.target.matches('[data-autosubmit]')) e.target.form.submit();
  });

  // A live region replaced by the server's rendering of it.
  function live(el, event, onData, onEnd) {
    var es = new EventSource(el.dataset.live);
    es.addEventListener(event, function (ev) {
      var d = JSON.parse(ev.data);
      el.innerHTML = d.html;
      if (onData) onData(d);
    });
    es.addEventListener('end', function (ev) {
      es.close();
      if (onEnd) onEnd(JSON.parse(ev.data));
    });
    return es;
  }

  var rows = document.getElementById('jobrows');
  if (rows && rows.dataset.live) {
    var note = document.getElementById('live-note');
    var es = live(rows, 'rows', function () {
      if (note) note.textContent = 'live · updated ' + new Date().toLocaleTimeString();
    });
    es.onerror = function () { if (note) note.textContent = 'reconnecting…'; };
  }

  var panel = document.getElementById('jobpanel');
  if (panel) {
    document.body.dataset.jobState = (panel.querySelector('[data-state]') || {dataset: {}}).dataset.state || '';
    if (panel.dataset.live) {
      live(panel, 'job', function (d) {
        document.body.dataset.jobState = d.state;
      }, function (d) {
        document.body.dataset.jobState = d.state;
        var f = document.getElementById('cancel-form');
        if (f) f.remove();
      });
    }
  }

  var log = document.getElementById('log');
  if (log) new LogView(log).start();
}

// ---- ANSI SGR to DOM ------------------------------------------------------

var ESC = /\x1b\[([0-9;]*)([A-Za-z])/g;

function stripAnsi(s) { return s.indexOf('\x1b') < 0 ? s : s.replace(ESC, ''); }

// xterm's 256-colour palette, for 38;5;n and 48;5;n.
function color256(n) {
  if (n < 16) return null;
  if (n >= 232) { var g = 8 + (n - 232) * 10; return 'rgb(' + g + ',' + g + ',' + g + ')'; }
  n -= 16;
  var v = [0, 95, 135, 175, 215, 255];
  return 'rgb(' + v[Math.floor(n / 36)] + ',' + v[Math.floor(n / 6) % 6] + ',' + v[n % 6] + ')';
}

// ansiInto appends text with its SGR styling as spans to el (styles by
// class; 256 and true colours by the CSS object model, which the
// Content-Security-Policy allows).
function ansiInto(el, text) {
  if (text.indexOf('\x1b') < 0) { el.appendChild(document.createTextNode(text)); return; }
  var st = {fg: null, bg: null, bold: false, dim: false, italic: false, under: false, inverse: false};
  var last = 0, m;
  ESC.lastIndex = 0;
  function emit(s) {
    if (!s) return;
    var plain = !st.fg && !st.bg && !st.bold && !st.dim && !st.italic && !st.under && !st.inverse;
    if (plain) { el.appendChild(document.createTextNode(s)); return; }
    var sp = document.createElement('span');
    var fg = st.inverse ? st.bg : st.fg, bg = st.inverse ? st.fg : st.bg;
    var cls = [];
    if (fg !== null && typeof fg === 'number') cls.push('fg' + fg); else if (fg) sp.style.color = fg;
    if (bg !== null && typeof bg === 'number') cls.push('bg' + bg); else if (bg) sp.style.backgroundColor = bg;
    if (st.inverse && fg === null) cls.push('inv');
    if (st.bold) cls.push('b');
    if (st.dim) cls.push('dim');
    if (st.italic) cls.push('i');
    if (st.under) cls.push('u');
    sp.className = cls.join(' ');
    sp.textContent = s;
    el.appendChild(sp);
  }
  while ((m = ESC.exec(text)) !== null) {
    emit(text.slice(last, m.index));
    last = ESC.lastIndex;
    if (m[2] !== 'm') continue;
    var ps = m[1] === '' ? [0] : m[1].split(';').map(Number);
    for (var i = 0; i < ps.length; i++) {
      var p = ps[i];
      if (p === 0) st = {fg: null, bg: null, bold: false, dim: false, italic: false, under: false, inverse: false};
      else if (p === 1) st.bold = true;
      else if (p === 2) st.dim = true;
      else if (p === 3) st.italic = true;
      else if (p === 4) st.under = true;
      else if (p === 7) st.inverse = true;
      else if (p === 22) { st.bold = false; st.dim = false; }
      else if (p === 23) st.italic = false;
      else if (p === 24) st.under = false;
      else if (p === 27) st.inverse = false;
      else if (p >= 30 && p <= 37) st.fg = p - 30;
      else if (p === 39) st.fg = null;
      else if (p >= 40 && p <= 47) st.bg = p - 40;
      else if (p === 49) st.bg = null;
      else if (p >= 90 && p <= 97) st.fg = p - 90 + 8;
      else if (p >= 100 && p <= 107) st.bg = p - 100 + 8;
      else if ((p === 38 || p === 48) && ps[i + 1] === 5) {
        var n = ps[i + 2] | 0, c = n < 16 ? n : color256(n);
        if (p === 38) st.fg = c; else st.bg = c;
        i += 2;
      } else if ((p === 38 || p === 48) && ps[i + 1] === 2) {
        var rgb = 'rgb(' + (ps[i + 2] | 0) + ',' + (ps[i + 3] | 0) + ',' + (ps[i + 4] | 0) + ')';
        if (p === 38) st.fg = rgb; else st.bg = rgb;
        i += 4;
      }
    }
  }
  emit(text.slice(last));
}

// ---- The log viewer ---------------------------------------------------------

var ROW = 18;      // px per line (the CSS's .log line-height)
var OVERSCAN = 40; // lines rendered above and below the view

var GROUP = /^(?:##\[group\]|::group::)(.*)$/;
var ENDGROUP = /^(?:##\[endgroup\]|::endgroup::)/;

function LogView(el) {
  this.el = el;
  this.space = el.querySelector('.log-space');
  this.layer = document.createElement('div');
  this.layer.className = 'log-rows';
  el.appendChild(this.layer);
  this.lines = [];       // raw text of each line (ANSI kept)
  this.plain = [];       // stripped text, filled lazily for search
  this.kind = [];        // 0 text, 1 group start, 2 group end
  this.group = [];       // index of the group a line is in, or -1
  this.groups = [];      // {start, end, title, open}
  this.openGroup = -1;   // the group being written
  this.partial = '';
  this.visible = new Int32Array(0);
  this.nvisible = 0;
  this.dirty = false;
  this.done = false;
  this.matches = [];
  this.cur = -1;
  this.query = '';
  this.target = -1;
  this.follow = document.getElementById('log-follow');
  this.status = document.getElementById('log-status');
}

LogView.prototype.start = function () {
  var self = this;
  this.setStatus('loading…');
  if (this.el.dataset.raw) this.fetchRaw(); else this.tail();
  this.el.addEventListener('scroll', function () {
    if (self.follow && self.follow.checked && !self.atBottom()) self.follow.checked = false;
    self.schedule();
  });
  this.el.addEventListener('click', function (e) {
    var t = e.target.closest('.fold');
    if (t) { self.toggle(+t.dataset.group); e.preventDefault(); }
  });
  if (this.follow) this.follow.addEventListener('change', function () { if (self.follow.checked) self.scrollToEnd(); });
  var search = document.getElementById('log-search');
  var timer = null;
  if (search) {
    search.addEventListener('input', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { self.search(search.value); }, 150);
    });
    search.addEventListener('keydown', function (e) {
      if (e.key === 'Enter') { e.preventDefault(); clearTimeout(timer); if (search.value !== self.query) self.search(search.value); else self.step(e.shiftKey ? -1 : 1); }
    });
  }
  var prev = document.getElementById('log-prev'), next = document.getElementById('log-next'), fold = document.getElementById('log-fold');
  if (prev) prev.addEventListener('click', function () { self.step(-1); });
  if (next) next.addEventListener('click', function () { self.step(1); });
  if (fold) fold.addEventListener('click', function () { self.foldAll(); });
  window.addEventListener('hashchange', function () { self.jumpToHash(); });
  this.jumpToHash();
};

// tail follows a live job's output (Server-Sent Events; a reconnect
// resumes after the last event).
LogView.prototype.tail = function () {
  var self = this;
  var es = new EventSource(this.el.dataset.src);
  this.es = es;
  es.addEventListener('out', function (ev) { self.append(JSON.parse(ev.data).t); });
  es.addEventListener('end', function () {
    es.close();
    self.finish();
  });
  es.onerror = function () {
    if (es.readyState === EventSource.CLOSED && !self.done) self.setStatus('disconnected: reload the page');
    else if (!self.done) self.setStatus('reconnecting…');
  };
};

// fetchRaw reads a finished job's output in one streamed download: the
// cheapest way for a long log.
LogView.prototype.fetchRaw = function () {
  var self = this;
  fetch(this.el.dataset.raw, {credentials: 'same-origin'}).then(function (resp) {
    if (!resp.ok) throw new Error(resp.status + ' ' + resp.statusText);
    var reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    function pump() {
      return reader.read().then(function (r) {
        if (r.done) { self.finish(); return; }
        self.append(r.value);
        return pump();
      });
    }
    return pump();
  }).catch(function (e) { self.setStatus('could not load the log: ' + e.message); });
};

LogView.prototype.setStatus = function (s) { if (this.status) this.status.textContent = s; };

LogView.prototype.atBottom = function () {
  return this.el.scrollTop + this.el.clientHeight >= this.el.scrollHeight - 2 * ROW;
};

// append adds output: complete lines now, the rest when its newline comes.
LogView.prototype.append = function (text) {
  var s = this.partial + text;
  var parts = s.split('\n');
  this.partial = parts.pop();
  for (var i = 0; i < parts.length; i++) this.addLine(parts[i]);
  this.grew = true;
  this.schedule();
};

LogView.prototype.addLine = function (line) {
  if (line.charCodeAt(line.length - 1) === 13) line = line.slice(0, -1);
  var cr = line.lastIndexOf('\r');
  if (cr >= 0) line = line.slice(cr + 1); // a progress bar: what it ended at
  var n = this.lines.length;
  var plain = line.indexOf('group') >= 0 ? stripAnsi(line) : '';
  var m = plain ? GROUP.exec(plain) : null;
  if (m) {
    if (this.openGroup >= 0) { this.groups[this.openGroup].end = n - 1; this.closed(this.openGroup); }
    this.groups.push({start: n, end: -1, title: m[1] || 'Step', open: false});
    this.openGroup = this.groups.length - 1;
    this.kind.push(1);
    this.group.push(this.openGroup);
  } else if (plain && ENDGROUP.test(plain)) {
    this.kind.push(2);
    this.group.push(this.openGroup);
    if (this.openGroup >= 0) { this.groups[this.openGroup].end = n; this.closed(this.openGroup); }
    this.openGroup = -1;
  } else {
    this.kind.push(0);
    this.group.push(this.openGroup);
  }
  this.lines.push(line);
  // The shown lines grow with the log (no full rebuild per chunk).
  if (!this.dirty && this.isShown(n)) this.pushVisible(n);
};

LogView.prototype.pushVisible = function (i) {
  if (this.nvisible === this.visible.length) {
    var v = new Int32Array(Math.max(1024, this.visible.length * 2));
    v.set(this.visible);
    this.visible = v;
  }
  this.visible[this.nvisible++] = i;
};

// closed folds a step that just ended (unless opened by hand): its lines,
// the last shown, leave the view.
LogView.prototype.closed = function (g) {
  var gr = this.groups[g];
  if (gr.open || this.dirty) return;
  while (this.nvisible > 0 && this.visible[this.nvisible - 1] > gr.start) this.nvisible--;
};

LogView.prototype.finish = function () {
  if (this.partial !== '') { this.addLine(this.partial); this.partial = ''; }
  if (this.openGroup >= 0) { this.groups[this.openGroup].end = this.lines.length - 1; this.openGroup = -1; }
  this.done = true;
  this.dirty = true;
  this.render();
  this.setStatus('complete · ' + this.lines.length + ' lines');
  document.body.dataset.logCompleteAt = String(Math.round(performance.now()));
  document.body.dataset.log = 'complete';
  document.body.dataset.logLines = String(this.lines.length);
  this.jumpToHash();
  if (this.query) this.search(this.query);
};

// isShown: a line is shown unless its group is folded (the group's own
// first line always is; end markers never are).
LogView.prototype.isShown = function (i) {
  var k = this.kind[i];
  if (k === 2) return false;
  if (k === 1) return true;
  var g = this.group[i];
  if (g < 0) return true;
  var gr = this.groups[g];
  // The step being written stays open while the log is live.
  return gr.open || (!this.done && g === this.openGroup);
};

LogView.prototype.rebuild = function () {
  var n = this.lines.length;
  if (this.visible.length < n) this.visible = new Int32Array(Math.max(n, this.visible.length * 2, 1024));
  var v = 0;
  for (var i = 0; i < n; i++) if (this.isShown(i)) this.visible[v++] = i;
  this.nvisible = v;
  this.space.style.height = (v * ROW) + 'px';
  this.dirty = false;
};

LogView.prototype.schedule = function () {
  if (this.frame) return;
  var self = this;
  this.frame = requestAnimationFrame(function () { self.frame = 0; self.render(); });
};

LogView.prototype.render = function () {
  if (this.dirty) this.rebuild();
  if (this.grew) {
    this.grew = false;
    this.space.style.height = (this.nvisible * ROW) + 'px';
    if (this.follow && this.follow.checked && this.target < 0) this.el.scrollTop = this.el.scrollHeight;
    if (!this.done) this.setStatus('live · ' + this.lines.length + ' lines');
  }
  var first = Math.max(0, Math.floor(this.el.scrollTop / ROW) - OVERSCAN);
  var last = Math.min(this.nvisible, Math.ceil((this.el.scrollTop + this.el.clientHeight) / ROW) + OVERSCAN);
  var frag = document.createDocumentFragment();
  var hits = this.query ? this.hitSet() : null;
  var curLine = this.cur >= 0 ? this.matches[this.cur] : -1;
  for (var v = first; v < last; v++) {
    var i = this.visible[v];
    var row = document.createElement('div');
    row.className = 'ln';
    row.style.top = (v * ROW) + 'px';
    row.id = 'L' + (i + 1);
    if (i === this.target) row.classList.add('target');
    if (hits && hits.has(i)) row.classList.add('hit');
    if (i === curLine) row.classList.add('cur');
    var a = document.createElement('a');
    a.className = 'lno';
    a.href = '#L' + (i + 1);
    a.textContent = i + 1;
    row.appendChild(a);
    var t = document.createElement('span');
    t.className = 'lt';
    if (this.kind[i] === 1) {
      var g = this.groups[this.group[i]];
      var f = document.createElement('button');
      f.type = 'button';
      f.className = 'fold';
      f.dataset.group = this.group[i];
      var open = g.open || (!this.done && this.group[i] === this.openGroup);
      f.textContent = (open ? '▾ ' : '▸ ') + g.title;
      if (!open && g.end > g.start) {
        var c = document.createElement('span');
        c.className = 'sub';
        c.textContent = '  ' + (g.end - g.start) + ' lines';
        f.appendChild(c);
      }
      t.appendChild(f);
    } else {
      ansiInto(t, this.lines[i]);
    }
    row.appendChild(t);
    frag.appendChild(row);
  }
  this.layer.replaceChildren(frag);
  if (!this.firstRows && last > first) {
    this.firstRows = true;
    document.body.dataset.logFirstAt = String(Math.round(performance.now()));
  }
};

LogView.prototype.toggle = function (g) {
  var gr = this.groups[g];
  if (!gr) return;
  gr.open = !(gr.open || (!this.done && g === this.openGroup));
  this.dirty = true;
  this.render();
};

LogView.prototype.foldAll = function () {
  var anyOpen = this.groups.some(function (g) { return g.open; });
  this.groups.forEach(function (g) { g.open = !anyOpen; });
  this.dirty = true;
  this.render();
};

LogView.prototype.scrollToEnd = function () { this.el.scrollTop = this.el.scrollHeight; this.schedule(); };

// reveal opens the step holding line i and scrolls it into the middle.
LogView.prototype.reveal = function (i) {
  var g = this.group[i];
  if (g >= 0 && this.kind[i] !== 1 && !this.groups[g].open) { this.groups[g].open = true; this.dirty = true; }
  if (this.dirty) this.rebuild();
  var lo = 0, hi = this.nvisible - 1, v = 0;
  while (lo <= hi) { var mid = (lo + hi) >> 1; if (this.visible[mid] < i) lo = mid + 1; else { v = mid; hi = mid - 1; } }
  if (this.follow) this.follow.checked = false;
  this.el.scrollTop = Math.max(0, v * ROW - this.el.clientHeight / 2);
  this.render();
};

LogView.prototype.jumpToHash = function () {
  var m = /^#L(\d+)$/.exec(location.hash);
  if (!m) return;
  var i = +m[1] - 1;
  if (i >= this.lines.length) { this.target = i; return; } // not loaded yet
  this.target = i;
  this.reveal(i);
};

LogView.prototype.hitSet = function () {
  if (!this._hits || this._hitsFor !== this.matches) { this._hits = new Set(this.matches); this._hitsFor = this.matches; }
  return this._hits;
};

// search finds every line holding q (case-insensitive, colours ignored).
LogView.prototype.search = function (q) {
  this.query = q;
  this.matches = [];
  this.cur = -1;
  var out = document.getElementById('log-matches');
  if (!q) { if (out) out.textContent = ''; this.render(); return; }
  var needle = q.toLowerCase();
  for (var i = 0; i < this.lines.length; i++) {
    if (this.plain[i] === undefined) this.plain[i] = stripAnsi(this.lines[i]).toLowerCase();
    if (this.kind[i] !== 2 && this.plain[i].indexOf(needle) >= 0) this.matches.push(i);
  }
  if (out) out.textContent = this.matches.length ? this.matches.length + ' matches' : 'no match';
  if (this.matches.length) this.step(1); else this.render();
};

LogView.prototype.step = function (d) {
  if (!this.matches.length) return;
  this.cur = (this.cur + d + this.matches.length) % this.matches.length;
  var out = document.getElementById('log-matches');
  if (out) out.textContent = (this.cur + 1) + ' of ' + this.matches.length;
  this.reveal(this.matches[this.cur]);
};

init();
