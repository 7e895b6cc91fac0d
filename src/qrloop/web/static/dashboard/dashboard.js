// The dashboard's only script. An order's page follows its progress over server-sent events
// and shows the downloads once the order is done; nothing else needs a script.
const progress = document.querySelector("[data-events]");
if (progress) {
  const bar = progress.querySelector("progress");
  const label = progress.querySelector("[data-label]");
  const status = document.querySelector("[data-status]");
  const events = new EventSource(progress.dataset.events);
  events.addEventListener("progress", (event) => {
    const order = JSON.parse(event.data);
    bar.max = order.quantity;
    bar.value = order.done;
    label.textContent = order.label;
    status.textContent = order.status;
    status.className = "status " + order.status;
    if (order.finished) {
      events.close();
      document.querySelectorAll("[data-when-done]").forEach((part) => {
        part.hidden = order.status !== "done";
      });
    }
  });
}
