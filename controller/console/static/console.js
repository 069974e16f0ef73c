// tracectl console: the task page's log viewer. Hand-written, no dependencies.
(function () {
  "use strict";
  var box = document.getElementById("logview");
  if (!box) return;
  var task = box.dataset.task;
  var form = document.getElementById("log-filters");
  var out = document.getElementById("log-lines");
  var state = document.getElementById("log-state");
  var more = document.getElementById("log-more");
  var prev = document.getElementById("log-prev");
  var follow = document.getElementById("log-follow");
  var after = 0, before = 1, source = null, shown = 0, generation = 0, typing = null;

  function params(extra) {
    var p = new URLSearchParams();
    ["attempt", "stream", "level", "text"].forEach(function (k) {
      var v = form.elements[k].value.trim();
      if (v) p.set(k, v);
    });
    Object.keys(extra || {}).forEach(function (k) { p.set(k, extra[k]); });
    return p;
  }

  function add(line) {
    out.appendChild(element(line));
    shown += 1;
  }

  function element(line) {
    var div = document.createElement("div");
    div.className = "line " + line.stream + (line.level ? " lvl-" + line.level : "");
    div.dataset.seq = line.seq;
    div.dataset.stream = line.stream;
    var n = document.createElement("span");
    n.className = "n";
    n.textContent = line.seq;
    div.appendChild(n);
    div.appendChild(document.createTextNode(line.message));
    div.title = line.timestamp + " " + line.stream + (line.level ? " " + line.level : "");
    return div;
  }

  function say(text) { state.textContent = text; }

  function page() {
    stop();
    var mine = generation;
    return fetch("/ui/tasks/" + task + "/lines?" + params({after_seq: after, limit: 500}),
                 {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (mine !== generation) return;  // the view restarted meanwhile: a stale page
        data.items.forEach(add);
        var moved = data.next_after_seq !== after;
        after = data.next_after_seq;
        say(shown + " lines shown · read up to line " + after);
        more.disabled = !moved;
        if (follow.checked) live();
      });
  }

  function previous() {  // the page before the first line read, put above what is shown
    var mine = generation;
    return fetch("/ui/tasks/" + task + "/lines?" + params({before_seq: before, limit: 500}),
                 {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        if (mine !== generation) return;
        var top = out.firstChild;
        data.items.forEach(function (line) { out.insertBefore(element(line), top); });
        shown += data.items.length;
        before = data.first_seq;
        prev.disabled = before <= 1;
        say(shown + " lines shown · from line " + before);
      });
  }

  function live() {
    stop();
    source = new EventSource("/ui/tasks/" + task + "/follow?" + params({after_seq: after}));
    source.onmessage = function (e) {
      var line = JSON.parse(e.data);
      after = line.seq;
      var stick = out.scrollTop + out.clientHeight >= out.scrollHeight - 30;
      add(line);
      if (stick) out.scrollTop = out.scrollHeight;
      say(shown + " lines shown · following");
    };
    source.addEventListener("position", function (e) { after = Number(e.data); });
    source.addEventListener("end", function (e) {
      say(shown + " lines shown · the task ended: " + JSON.parse(e.data).status);
      stop();
      follow.checked = false;
    });
  }

  function stop() { if (source) { source.close(); source = null; } }

  function restart(from) {
    generation += 1;
    clearTimeout(typing);  // a pending filter change is part of this restart
    out.textContent = "";
    shown = 0;
    after = from;
    before = from + 1;
    prev.disabled = before <= 1;
    page();
  }

  function changed(e) {
    if (e.target.name === "line") return;
    if (e.target.id === "log-follow") { if (follow.checked) live(); else stop(); return; }
    clearTimeout(typing);
    typing = setTimeout(function () { restart(0); }, 250);
  }
  form.addEventListener("input", changed);
  form.addEventListener("change", changed);
  document.getElementById("log-jump").addEventListener("click", function () {
    var n = parseInt(form.elements.line.value, 10);
    if (n >= 1) restart(n - 1);
  });
  more.addEventListener("click", page);
  prev.addEventListener("click", previous);

  var passport = document.getElementById("passport");
  passport.addEventListener("toggle", function () {
    if (!passport.open || passport.dataset.loaded) return;
    passport.dataset.loaded = "1";
    fetch("/ui/tasks/" + task + "/passport", {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        document.getElementById("passport-body").textContent = JSON.stringify(d, null, 2);
      });
  });

  page();
})();
