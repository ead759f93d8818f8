package bundle

import (
	"bytes"
	"net/http"
	"path"
	"strings"
	"time"
)

var (
	hdrVary  = []string{"Accept-Encoding"}
	hdrAllow = []string{"GET, HEAD"}
)

func redirectToDir(w http.ResponseWriter, r *http.Request) {
	target := path.Base(r.URL.Path) + "/"
	if q := r.URL.RawQuery; q != "" {
		target += "?" + q
	}
	http.Redirect(w, r, target, http.StatusMovedPermanently)
}

func serveFile(w http.ResponseWriter, r *http.Request, f *file) {
	hdr := w.Header()
	v := f
	if f.br != nil || f.gz != nil {
		hdr["Vary"] = hdrVary
		if br, gz := acceptEncoding(r.Header.Get("Accept-Encoding")); br && f.br != nil {
			v = f.br
		} else if gz && f.gz != nil {
			v = f.gz
		}
		if v != f {
			hdr["Content-Encoding"] = v.hdrEnc
		}
	}
	hdr["Content-Type"] = f.hdrType
	hdr["Cache-Control"] = v.hdrCache
	hdr["Etag"] = v.hdrTag

	if inm := r.Header.Get("If-None-Match"); inm != "" {
		if etagMatch(inm, v.etag) {
			delete(hdr, "Content-Type")
			w.WriteHeader(http.StatusNotModified)
			return
		}
	} else if r.Header.Get("If-Match") != "" || r.Header.Get("If-Unmodified-Since") != "" {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(v.data))
		return
	}
	if r.Header.Get("Range") != "" {
		// Ranges, If-Range and multipart answers: net/http does them right.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(v.data))
		return
	}
	hdr["Content-Length"] = v.hdrLen
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		v.writeBody(w)
	}
}

// etagMatch implements the weak comparison of If-None-Match (RFC 9110
// 13.1.2) without allocating.
func etagMatch(header, etag string) bool {
	for header != "" {
		var tok string
		tok, header, _ = strings.Cut(header, ",")
		tok = strings.TrimSpace(tok)
		if tok == "*" || strings.TrimPrefix(tok, "W/") == etag {
			return true
		}
	}
	return false
}

// acceptEncoding reports whether br and gzip are acceptable (q > 0),
// without allocating.
func acceptEncoding(header string) (br, gzip bool) {
	star := false
	seenBr, seenGz := false, false
	for header != "" {
		var tok string
		tok, header, _ = strings.Cut(header, ",")
		coding, params, _ := strings.Cut(tok, ";")
		coding = strings.TrimSpace(coding)
		ok := !zeroQ(params)
		switch {
		case strings.EqualFold(coding, "br"):
			br, seenBr = ok, true
		case strings.EqualFold(coding, "gzip"), strings.EqualFold(coding, "x-gzip"):
			gzip, seenGz = ok, true
		case coding == "*":
			star = ok
		}
	}
	if star {
		br = br || !seenBr
		gzip = gzip || !seenGz
	}
	return br, gzip
}

func zeroQ(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
		if strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimSpace(v)
			return v == "0" || strings.HasPrefix(v, "0.") && strings.Trim(v[2:], "0") == ""
		}
	}
	return false
}
