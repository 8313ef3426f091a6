package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/berth-registry/berth/pkg/registry"
	"github.com/berth-registry/berth/tests/harness"
)

func TestLsCommand(t *testing.T) {
	host := testRegistry(t)
	l := harness.WriteIndex(t, "v2", 1<<20, "linux/amd64", "linux/arm64")
	runCmd(t, "push", "-q", l.Dir, host+"/cli/app:v2")

	out, _ := runCmd(t, "ls", "--json", host+"/cli/app")
	var got registry.Images
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if got.Name != "cli/app" || len(got.Images) != 3 {
		t.Fatalf("listing: %s", out)
	}
	byDigest := map[string]registry.Image{}
	for _, im := range got.Images {
		byDigest[im.Digest] = im
		if im.PushedAt == "" || im.LastPulledAt == "" || im.Size <= 0 {
			t.Errorf("image %+v: missing fields", im)
		}
	}
	if ix := byDigest[l.Digest()]; len(ix.Tags) != 1 || ix.Tags[0] != "v2" {
		t.Fatalf("index %s: %+v", l.Digest(), ix)
	}
	for _, img := range l.Images {
		// A platform image pulls its manifest, config and layers.
		im, ok := byDigest[img.Manifest.Digest]
		if !ok || len(im.Tags) != 0 || im.Size < 1<<20 {
			t.Fatalf("platform image %s: %+v", img.Manifest.Digest, im)
		}
	}

	out, _ = runCmd(t, "ls", host+"/cli/app")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "TAG") || !strings.Contains(lines[0], "LAST PULLED") {
		t.Fatalf("table:\n%s", out)
	}
	short := l.Digest()[:len("sha256:")+12]
	if !strings.Contains(out, "v2 ") || !strings.Contains(out, short) || strings.Count(out, "<none>") != 2 || !strings.Contains(out, " UTC") {
		t.Fatalf("table:\n%s", out)
	}

	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"ls", host + "/cli/nothing"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "repository cli/nothing not found") {
		t.Fatalf("unknown repository: exit %d, %s", code, stderr.String())
	}
	if code := run(context.Background(), []string{"ls"}, &stdout, &stderr); code != 2 {
		t.Fatalf("no argument: exit %d", code)
	}
}

func TestNextPage(t *testing.T) {
	for link, want := range map[string]string{
		"": "",
		`</v2/a/_berth/images?last=sha256%3Aab&n=2>; rel="next"`: "/v2/a/_berth/images?last=sha256%3Aab&n=2",
	} {
		if got, err := nextPage(link); err != nil || got != want {
			t.Errorf("%q: %q %v", link, got, err)
		}
	}
	for _, bad := range []string{`<https://evil.example/v2/x>; rel="next"`, `</etc/passwd>; rel="next"`, `no brackets`} {
		if _, err := nextPage(bad); err == nil {
			t.Errorf("%q: accepted", bad)
		}
	}
}
