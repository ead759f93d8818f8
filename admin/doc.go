// Package admin is an http.Handler to mount on an internal port: the
// status of a handoff service as JSON, a live HTML page on the same data,
// and controls (upgrade the binary, roll a bundle, plugin or flag set
// back, change a flag's rollout) that work only through the authorisation
// hook the service supplies.
//
// The data is a metrics.Recorder's Status: the process and its generation,
// the last upgrades with each phase's timing and outcome (and, for a
// rollback, why), the listeners and their connections, each bundle, plugin
// and flag set with its versions, canary and evaluations. The page is one
// HTML document with its styles and script inline: no external asset, no
// build step. It follows the status as server-sent events (/events): the
// server sends it at each change and every second, and ends the stream
// when its process stops taking connections, during an upgrade, so that
// the page reconnects to the generation that took over and shows the
// generation change without a reload. A stream never holds a drain back.
//
// Controls are POST requests. They are refused (403) when they come from
// another origin (http.CrossOriginProtection) and unless Options.Authorize
// lets them through; without Authorize the page is read-only. The hook
// sees the request, so the service authenticates as it already does (a
// header, a cookie, a client certificate); the page sends what its user
// types in its Authorization field as a Bearer token:
//
//	rec, _ := metrics.New(metrics.Options{})
//	h := admin.New(admin.Options{Recorder: rec, Title: "checkout",
//		Authorize: func(r *http.Request, c admin.Control) error {
//			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+token)) != 1 {
//				return errors.New("a valid token is needed")
//			}
//			return nil
//		}})
//	adminSrv := &http.Server{Handler: h}
//	err := handoff.Run(ctx, handoff.Options{Setup: rec.Attach, OnEvent: rec.OnUpgraderEvent, OnSignal: rec.OnSignalEvent},
//		handoff.HTTP(srv, ":8080"), handoff.HTTP(adminSrv, "127.0.0.1:9090"))
//
// Serving the admin port through handoff.Run hands it over at each upgrade
// like the service's own. A rollout is written to the flag set's values
// file (a new file renamed into place, checked with flags.Parse first) and
// reloaded, so that it lasts across reloads and upgrades; a rollback of a
// bundle or flag set lasts until the next load of its files.
package admin
