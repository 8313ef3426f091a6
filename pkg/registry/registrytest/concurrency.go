package registrytest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/berth-registry/berth/pkg/oci"
)

// testConcurrency pushes the same and different blobs, manifests and tags
// into one repository from many goroutines at once, then checks that every
// tag resolves, every manifest's blobs are present and nothing is left
// staged.
func testConcurrency(t *testing.T, s *server) {
	const workers, rounds = 8, 4
	const repo = "conc/repo"
	shared := randomBytes(t, 64<<10)
	sharedCfg := []byte(`{"architecture":"amd64","os":"linux"}`)
	type pushed struct {
		tag    string
		digest oci.Digest
		blobs  []oci.Digest
	}
	var mu sync.Mutex
	var all []pushed
	errs := make(chan error, workers*rounds)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rounds; i++ {
				own := randomBytes(t, 32<<10+w*100+i)
				// Shared blob: monolithic on even workers, chunked on odd ones.
				var err error
				if w%2 == 0 {
					err = s.pushMono(repo, shared)
				} else {
					err = s.pushChunked(repo, shared, 10_000)
				}
				if err == nil {
					err = s.pushMono(repo, sharedCfg)
				}
				if err == nil {
					err = s.pushChunked(repo, own, 7_000)
				}
				if err != nil {
					errs <- err
					return
				}
				m := []byte(fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"config":{"mediaType":%q,"digest":%q,"size":%d},"layers":[{"mediaType":"application/octet-stream","digest":%q,"size":%d},{"mediaType":"application/octet-stream","digest":%q,"size":%d}]}`,
					oci.MediaTypeImageManifest, oci.MediaTypeImageConfig, sha(sharedCfg), len(sharedCfg), sha(shared), len(shared), sha(own), len(own)))
				tag := fmt.Sprintf("w%d-r%d", w, i)
				for _, tg := range []string{tag, "shared", fmt.Sprintf("round-%d", i)} {
					r, err := s.try("PUT", "/v2/"+repo+"/manifests/"+tg, m, map[string]string{"Content-Type": oci.MediaTypeImageManifest}, false)
					if err == nil && r.status != http.StatusCreated {
						err = fmt.Errorf("put %s: %d %s", tg, r.status, r.body)
					}
					if err != nil {
						errs <- err
						return
					}
				}
				mu.Lock()
				all = append(all, pushed{tag: tag, digest: sha(m), blobs: []oci.Digest{sha(sharedCfg), sha(shared), sha(own)}})
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, p := range all {
		r := s.do("GET", "/v2/"+repo+"/manifests/"+p.tag, nil, nil, false)
		s.expect(r, 200, "", "tag "+p.tag)
		if r.header.Get("Docker-Content-Digest") != string(p.digest) {
			t.Fatalf("tag %s resolves to %s, want %s", p.tag, r.header.Get("Docker-Content-Digest"), p.digest)
		}
		for _, b := range p.blobs {
			s.expect(s.do("HEAD", "/v2/"+repo+"/blobs/"+string(b), nil, nil, false), 200, "", "blob of "+p.tag)
		}
	}
	for _, tg := range []string{"shared", "round-0", "round-3"} {
		s.expect(s.do("GET", "/v2/"+repo+"/manifests/"+tg, nil, nil, false), 200, "", "raced tag "+tg)
	}
	var tags struct{ Tags []string }
	r := s.do("GET", "/v2/"+repo+"/tags/list", nil, nil, false)
	if err := json.Unmarshal(r.body, &tags); err != nil || len(tags.Tags) != workers*rounds+1+rounds {
		t.Fatalf("tag count %d: %s", len(tags.Tags), r.body)
	}
	if s.env.Leftovers != nil {
		if left := s.env.Leftovers(t); len(left) > 0 {
			t.Fatalf("staging data left behind: %v", left)
		}
	}
}

func (s *server) pushMono(repo string, b []byte) error {
	r, err := s.try("POST", fmt.Sprintf("/v2/%s/blobs/uploads/?digest=%s", repo, sha(b)), b, nil, false)
	if err == nil && r.status != http.StatusCreated {
		err = fmt.Errorf("monolithic push: %d %s", r.status, r.body)
	}
	return err
}

func (s *server) pushChunked(repo string, b []byte, chunk int) error {
	r, err := s.try("POST", "/v2/"+repo+"/blobs/uploads/", nil, nil, false)
	if err != nil {
		return err
	}
	if r.status != http.StatusAccepted {
		return fmt.Errorf("start: %d %s", r.status, r.body)
	}
	loc := r.header.Get("Location")
	for off := 0; off < len(b); off += chunk {
		end := min(off+chunk, len(b))
		r, err = s.try("PATCH", loc, b[off:end], map[string]string{"Content-Range": fmt.Sprintf("%d-%d", off, end-1)}, false)
		if err != nil {
			return err
		}
		if r.status != http.StatusAccepted {
			return fmt.Errorf("chunk %d: %d %s", off, r.status, r.body)
		}
		loc = r.header.Get("Location")
	}
	r, err = s.try("PUT", withDigest(loc, sha(b)), nil, nil, false)
	if err == nil && r.status != http.StatusCreated {
		err = fmt.Errorf("close: %d %s", r.status, r.body)
	}
	return err
}
