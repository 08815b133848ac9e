// The pools page kept live: one EventSource on /ui/pools/live (same origin, the session cookie); each
// `pools` event updates every pool's facts and its workers' rows in place (a new pool is cloned from the
// page's <template>), and a worker that joins or leaves is announced in the status region. No dependencies.
(function () {
  "use strict";
  var root = document.getElementById("pools");
  var note = document.getElementById("live-status");
  var at = document.getElementById("pools-at");
  var template = document.getElementById("pool-template");
  if (!root || !root.getAttribute("data-live") || !window.EventSource || !template) { return; }

  function setText(element, text) {
    if (element && element.textContent !== text) { element.textContent = text; }
  }

  function sectionOf(name) {
    var sections = root.querySelectorAll("section.pool");
    for (var i = 0; i < sections.length; i++) {
      if (sections[i].getAttribute("data-pool") === name) { return sections[i]; }
    }
    var section = template.content.querySelector("section.pool").cloneNode(true);
    section.setAttribute("data-pool", name);
    section.setAttribute("aria-label", "Pool " + name);
    setText(section.querySelector(".name"), name);
    var empty = root.querySelector(":scope > p.empty");
    if (empty) { empty.remove(); }
    root.appendChild(section);
    return section;
  }

  function workerRow(body, worker) {
    var row = document.createElement("tr");
    row.setAttribute("data-worker", worker.worker);
    var head = document.createElement("th");
    head.setAttribute("scope", "row");
    head.textContent = worker.worker;
    row.appendChild(head);
    ["w-capacity", "w-concurrency", "w-labels", "w-heard"].forEach(function (name) {
      var td = document.createElement("td");
      td.className = name;
      row.appendChild(td);
    });
    body.appendChild(row);
    return row;
  }

  function update(pool, changes) {
    var section = sectionOf(pool.name);
    setText(section.querySelector(".capacity"), pool.capacity);
    setText(section.querySelector(".labels"), pool.labels);
    setText(section.querySelector(".live-capacity"), pool.live_capacity);
    setText(section.querySelector(".queued"), pool.queued);
    var body = section.querySelector("table.workers tbody");
    var rows = {};
    Array.prototype.forEach.call(body.querySelectorAll("tr[data-worker]"), function (row) {
      rows[row.getAttribute("data-worker")] = row;
    });
    pool.workers.forEach(function (worker) {
      var row = rows[worker.worker];
      if (!row) { row = workerRow(body, worker); changes.push("Worker " + worker.worker + " joined pool " + pool.name + "."); }
      delete rows[worker.worker];
      setText(row.querySelector(".w-capacity"), worker.capacity);
      setText(row.querySelector(".w-concurrency"), worker.concurrency);
      setText(row.querySelector(".w-labels"), worker.labels);
      setText(row.querySelector(".w-heard"), worker.heard);
    });
    Object.keys(rows).forEach(function (gone) {
      rows[gone].remove();
      changes.push("Worker " + gone + " left pool " + pool.name + ".");
    });
    var empty = body.querySelector("tr.empty");
    if (pool.workers.length && empty) { empty.remove(); }
    if (!pool.workers.length && !empty) {
      var row = document.createElement("tr");
      row.className = "empty";
      var td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = "No live worker.";
      row.appendChild(td);
      body.appendChild(row);
    }
  }

  var source = new EventSource(root.getAttribute("data-live"));
  source.addEventListener("open", function () { note.textContent = "Live: the pools are read every few seconds."; });
  source.addEventListener("pools", function (message) {
    var data = JSON.parse(message.data);
    var changes = [];
    var names = {};
    data.pools.forEach(function (pool) { names[pool.name] = true; update(pool, changes); });
    Array.prototype.forEach.call(root.querySelectorAll("section.pool"), function (section) {
      var name = section.getAttribute("data-pool");
      if (!names[name]) { section.remove(); changes.push("Pool " + name + " is gone: no worker serves it."); }
    });
    setText(at, data.at);
    if (changes.length) { note.textContent = changes.join(" "); }
  });
  source.addEventListener("signed-out", function () {
    source.close();
    note.textContent = "Your session ended: reload the page to sign in again.";
  });
})();
