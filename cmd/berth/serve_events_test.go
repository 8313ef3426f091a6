package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/registry/registrytest"
)

func TestEventsFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--events-webhook", "ftp://example.com/hook"},
		{"--events-webhook", "not a url"},
		{"--events-secret-file", "secret"}, // without a webhook
	} {
		var stderr bytes.Buffer
		if _, err := parseServeFlags(args, &stderr); !errors.Is(err, errUsage) || stderr.Len() == 0 {
			t.Errorf("%v: err %v, stderr %q", args, err, stderr.String())
		}
	}
	c, err := parseServeFlags([]string{"--events-webhook", "https://hooks.example.com/berth", "--events-secret-file", "s", "--events-log", "e.jsonl"}, io.Discard)
	if err != nil || c.Events != (eventsConfig{Webhook: "https://hooks.example.com/berth", SecretFile: "s", LogFile: "e.jsonl"}) {
		t.Fatalf("events flags: %+v, %v", c.Events, err)
	}
}

// TestServeEventsWebhook runs `berth serve --events-webhook --events-secret-file
// --events-log` and pushes and deletes through it: the receiver, which
// fails its first post, gets each event as signed CloudEvents JSON after
// the retry, and the log file holds the same documents.
func TestServeEventsWebhook(t *testing.T) {
	dir := t.TempDir()
	secretFile, logFile := filepath.Join(dir, "secret"), filepath.Join(dir, "events.jsonl")
	if err := os.WriteFile(secretFile, []byte("hook-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		posts  int
		bodies [][]byte
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		posts++
		if posts == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if !events.VerifySignature([]byte("hook-key"), b, r.Header.Get(events.SignatureHeader)) ||
			r.Header.Get("Content-Type") != events.CloudEventsContentType {
			t.Errorf("post %d: signature %q, content type %q", posts, r.Header.Get(events.SignatureHeader), r.Header.Get("Content-Type"))
		}
		bodies = append(bodies, b)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()

	base, stop := serveEmbedded(t, filepath.Join(dir, "data"),
		"--events-webhook", hook.URL, "--events-secret-file", secretFile, "--events-log", logFile)
	d := registrytest.PushImage(t, registrytest.Remote(base), "team/app", "v1", registrytest.NewImage([]byte(`{"os":"linux"}`), []byte("layer"))).Digest
	req, _ := http.NewRequest(http.MethodDelete, base+"/v2/team/app/manifests/v1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("tag delete: %d", resp.StatusCode)
	}
	if err := stop(); err != nil { // shutdown delivers what is queued
		t.Fatal(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if posts != 3 || len(bodies) != 2 {
		t.Fatalf("%d posts, %d delivered; want 3 posts (one retried), 2 events", posts, len(bodies))
	}
	var got []events.CloudEvent
	for _, b := range bodies {
		var ce events.CloudEvent
		if err := json.Unmarshal(b, &ce); err != nil {
			t.Fatal(err)
		}
		got = append(got, ce)
	}
	for i, want := range []events.Detail{
		{ActionType: "PUSH", ImageTag: "v1", ManifestMediaType: "application/vnd.oci.image.manifest.v1+json", ArtifactMediaType: "application/vnd.oci.image.config.v1+json"},
		{ActionType: "DELETE", ImageTag: "v1", ManifestMediaType: "application/vnd.oci.image.manifest.v1+json"},
	} {
		want.Version, want.Result, want.RepositoryName, want.ImageDigest, want.EventID = "1", "SUCCESS", "team/app", string(d), got[i].ID
		ce := got[i]
		if ce.SpecVersion != "1.0" || ce.Source != "berth.registry" || ce.Type != "berth.image.action.v1" || ce.Subject != "team/app" || !reflect.DeepEqual(ce.Data, want) {
			t.Errorf("event %d: %+v\nwant data %+v", i, ce, want)
		}
	}
	// The log file holds the same documents, in order.
	f, err := os.Open(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines [][]byte
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, append([]byte(nil), sc.Bytes()...))
	}
	if len(lines) != 2 || !bytes.Equal(lines[0], bodies[0]) || !bytes.Equal(lines[1], bodies[1]) {
		t.Fatalf("log file\n%s\nwebhook bodies\n%s", bytes.Join(lines, []byte("\n")), bytes.Join(bodies, []byte("\n")))
	}
}
