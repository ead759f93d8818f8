// A client-side route, served by the SPA fallback.
document.getElementById("route").textContent = "route: " + location.pathname;
