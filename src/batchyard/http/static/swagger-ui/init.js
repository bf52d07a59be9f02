// Starts Swagger UI on the schema of the server that served this page (a file of its own,
// not an inline script: the page's Content-Security-Policy allows only scripts of 'self').
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.schema,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
