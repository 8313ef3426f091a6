package registry

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/berth-registry/berth/pkg/errcode"
)

// maxPage bounds one tags or catalog page, asked for or not; a longer
// listing continues through the Link header.
const maxPage = 10000

// pageParams reads n and last of a tags or catalog request. n < 0 means
// "not given". A bad n is the client's input, so it is coded here.
func pageParams(r *http.Request) (n int, last string, err error) {
	q := r.URL.Query()
	n = -1
	if s := q.Get("n"); s != "" {
		v, perr := strconv.Atoi(s)
		if perr != nil || v < 0 {
			return 0, "", errcode.New(errcode.PaginationNumberInvalid, map[string]string{"n": s})
		}
		n = v
	}
	return n, q.Get("last"), nil
}

// pageSize is the page to read for a requested n: all of it up to maxPage.
func pageSize(n int) int {
	if n < 0 || n > maxPage {
		return maxPage
	}
	return n
}

// nextLink points the client at the page after last.
func nextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", "<"+path+"?"+q.Encode()+`>; rel="next"`)
}

func writeJSON(w http.ResponseWriter, status int, contentType string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	setInt(w.Header(), "Content-Length", int64(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}
