// Starts Swagger UI on /docs. An external file, not an inline <script>: the page runs under the
// same Content-Security-Policy as every other (script-src 'self'). The page names the OpenAPI
// document in data-openapi; nothing is fetched from elsewhere (validatorUrl: null stops the
// badge that would ask validator.swagger.io).
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.openapi,
  dom_id: "#swagger-ui",
  layout: "BaseLayout",
  deepLinking: true,
  docExpansion: "none",
  showExtensions: true,
  showCommonExtensions: true,
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
