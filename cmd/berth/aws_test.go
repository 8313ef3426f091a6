package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-registry/berth/internal/testenv"
)

// `berth serve --backend aws` whose storage is out of reach exits at once
// with the reason, instead of logging "listening" and answering 500 to
// every request but /v2/.
func TestServeAWSFailsFast(t *testing.T) {
	testenv.UseEmulators(t)
	none := filepath.Join(t.TempDir(), "none")
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{name: "no credentials", want: "no usable AWS credentials",
			env: map[string]string{"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_PROFILE": "",
				"AWS_CONFIG_FILE": none, "AWS_SHARED_CREDENTIALS_FILE": none, "AWS_WEB_IDENTITY_TOKEN_FILE": "",
				"AWS_CONTAINER_CREDENTIALS_FULL_URI": "", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": ""}},
		{name: "missing bucket", want: "not found in", args: []string{"--bucket", testenv.Name("missing"), "--table", "t"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := []string{"serve", "--addr", "127.0.0.1:0", "--backend", "aws", "--s3-path-style"}
			if tc.args == nil {
				tc.args = []string{"--bucket", "b", "--table", "t"}
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			code := run(ctx, append(args, tc.args...), &stdout, &stderr)
			if code != 1 || !strings.Contains(stderr.String(), tc.want) || strings.Contains(stderr.String(), `"listening"`) {
				t.Fatalf("exit %d, want 1 with %q\nstderr %s", code, tc.want, stderr.String())
			}
			t.Log(stderr.String())
		})
	}
}
