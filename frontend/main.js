// The Rallypoint map wall: sign in, choose a site, draw its layers, then follow its incidents
// live over the websocket (docs/protocol.md). Plain ES modules, no build step; Leaflet is served
// by Rallypoint from its npm install, and nothing is loaded from anywhere else. This entry wires
// the header and the sign-in form and starts; frontend/README.md maps the modules.
import { TOKEN_KEY } from "./api.js";
import { $, show } from "./dom.js";
import { currentLanguage, setLanguage, translatePage } from "./i18n.js";
import { changeSite, chooseSite, isKiosk, login, signOut, startKiosk, takeKioskToken } from "./session.js";
import { setUpReplay } from "./replay.js"; // after session.js: it extends the Wall of state.js

translatePage();
$("language").value = currentLanguage();
$("language").addEventListener("change", () => setLanguage($("language").value));
$("login-form").addEventListener("submit", login);
$("sign-out").addEventListener("click", () => signOut());
$("change-site").addEventListener("click", changeSite);
setUpReplay();

if (takeKioskToken() || isKiosk()) startKiosk();
else if (sessionStorage.getItem(TOKEN_KEY)) chooseSite();
else show("login");
