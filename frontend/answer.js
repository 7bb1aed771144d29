// The answer page of a call-out: the token comes in the link's fragment (never sent to a
// server, so never in a log) and is posted once, on the person's own tap.
"use strict";

(function () {
  const token = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  const button = document.getElementById("confirm");
  const result = document.getElementById("result");
  // Out of the address bar and the history at once: a shared screen shows no token.
  history.replaceState(null, "", window.location.pathname);

  function show(text, failed) {
    result.textContent = text;
    result.classList.toggle("error", Boolean(failed));
  }

  if (!token) {
    button.disabled = true;
    show("链接不完整：请使用短信中的完整链接。 The link is incomplete: open the whole link of the message.", true);
    return;
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    show("发送中… Sending…");
    try {
      const response = await fetch("/api/notices/answer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }),
      });
      const body = await response.json();
      if (response.ok) {
        show("已确认，谢谢。 Confirmed: thank you. (" + body.answered_at + ")");
      } else {
        show("未能确认 Not confirmed: " + (body.detail || response.status), true);
        button.disabled = response.status !== 503;
      }
    } catch (error) {
      show("网络错误，请重试。 No connection: try again.", true);
      button.disabled = false;
    }
  });
})();
