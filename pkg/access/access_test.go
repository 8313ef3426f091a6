package access_test

import (
	"context"
	"testing"

	"github.com/berth-registry/berth/pkg/access"
)

type who struct{ access.Open }

func (who) Subject() string { return "alice" }

func TestSubjectOf(t *testing.T) {
	ctx := context.Background()
	if s := access.SubjectOf(ctx); s != "" {
		t.Fatalf("no checker: %q", s)
	}
	if s := access.SubjectOf(access.NewContext(ctx, access.Open{})); s != "" {
		t.Fatalf("anonymous checker: %q", s)
	}
	if s := access.SubjectOf(access.NewContext(ctx, who{})); s != "alice" {
		t.Fatalf("identified checker: %q", s)
	}
}
