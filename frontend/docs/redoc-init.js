// Runs before ReDoc's bundle on /redoc. ReDoc's side menu shows Redocly's logo from
// cdn.redoc.ly; this server's pages load nothing from elsewhere, and the Content-Security-Policy
// would refuse it (img-src 'self' data:) with an error in the console. An image of another
// origin gets an empty data: URL instead, whose load error ReDoc answers by hiding the logo.
// (React sets an image's src as a property, not an attribute.)
const src = Object.getOwnPropertyDescriptor(HTMLImageElement.prototype, "src");
Object.defineProperty(HTMLImageElement.prototype, "src", {
  ...src,
  set(value) {
    const url = new URL(String(value), document.baseURI);
    const here = url.protocol === "data:" || url.origin === window.location.origin;
    src.set.call(this, here ? value : "data:,");
  },
});
