// The executions list's live statuses: one EventSource on /ui/executions/live (same origin, the session
// cookie); each `execution` event updates its row, or adds a row for a new execution. No dependencies.
(function () {
  "use strict";
  var table = document.getElementById("executions");
  var note = document.getElementById("live-status");
  if (!table || !table.getAttribute("data-live") || !window.EventSource) { return; }
  var body = table.tBodies[0];

  function cell(row, text, className) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) { td.className = className; }
    row.appendChild(td);
    return td;
  }

  function newRow(item) {
    var row = document.createElement("tr");
    row.setAttribute("data-execution-id", item.execution_id);
    var first = cell(row, "");
    var link = document.createElement("a");
    link.href = item.url;
    link.textContent = item.execution_id;
    first.appendChild(link);
    cell(row, item.path);
    cell(row, String(item.version));
    cell(row, item.status, "status status-" + item.status);
    cell(row, item.started);
    cell(row, item.ended, "ended");
    var empty = body.querySelector("tr.empty");
    if (empty) { empty.remove(); }
    body.insertBefore(row, body.firstChild);
    return row;
  }

  var source = new EventSource(table.getAttribute("data-live"));
  source.addEventListener("open", function () { note.textContent = "Live: statuses update as they change."; });
  source.addEventListener("execution", function (message) {
    var item = JSON.parse(message.data);
    var row = null;
    var rows = body.rows;
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-execution-id") === item.execution_id) { row = rows[i]; break; }
    }
    if (!row) { newRow(item); note.textContent = "New execution " + item.execution_id + ": " + item.status + "."; return; }
    var status = row.querySelector(".status");
    if (status.textContent !== item.status) {
      status.textContent = item.status;
      status.className = "status status-" + item.status;
      row.querySelector(".ended").textContent = item.ended;
      note.textContent = "Execution " + item.execution_id + " is " + item.status + ".";
    }
  });
  source.addEventListener("signed-out", function () {
    source.close();
    note.textContent = "Your session ended: reload the page to sign in again.";
  });
})();
