// The answer page of a call-out: the token comes in the link's fragment (never sent to a
// server, so never in a log) and is posted once, on the person's own tap. Its words come from
// the wall's message table (i18n.js), in the language remembered on this phone, else the
// phone's own; the page's HTML says everything in both languages until the table is loaded.
// A classic script (the page's tests read its tag), importing the table with import().
"use strict";

(async function () {
  const token = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  // Out of the address bar and the history at once, before anything else: a shared screen
  // shows no token.
  history.replaceState(null, "", window.location.pathname);
  const button = document.getElementById("confirm");
  const result = document.getElementById("result");
  const choice = document.getElementById("language");

  const { currentLanguage, setLanguage, t, translatePage } = await import("./i18n.js");
  let said = null; // what the result line says: a function giving its text in the language now
  let failed = false;

  function show(say, isFailure) {
    said = say;
    failed = Boolean(isFailure);
    result.textContent = say();
    result.classList.toggle("error", failed);
  }

  // The time of the answer as this phone's reader writes times, in the page's language.
  function when(iso) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleString(currentLanguage(), { dateStyle: "medium", timeStyle: "short" });
  }

  translatePage();
  choice.value = currentLanguage();
  choice.addEventListener("change", () => setLanguage(choice.value));
  document.addEventListener("rp-language", () => {
    if (said) show(said, failed);
  });

  if (!token) {
    button.disabled = true;
    show(() => t("answer.incomplete"), true);
    return;
  }

  button.addEventListener("click", async () => {
    button.disabled = true;
    show(() => t("answer.sending"));
    try {
      const response = await fetch("/api/notices/answer", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ token }),
      });
      const body = await response.json();
      if (response.ok) {
        show(() => t("answer.confirmed", { time: when(body.answered_at) }));
      } else {
        const detail = body.detail || response.status;
        show(() => t("answer.refused", { detail }), true);
        button.disabled = response.status !== 503;
      }
    } catch (error) {
      show(() => t("answer.offline"), true);
      button.disabled = false;
    }
  });
})();
