package eventbridge_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/berth-registry/berth/pkg/events"
	"github.com/berth-registry/berth/pkg/events/eventbridge"
	"github.com/berth-registry/berth/pkg/events/eventbridge/ebtest"
)

var t0 = time.Date(2026, 12, 5, 7, 0, 0, 0, time.UTC)

func TestPutEvents(t *testing.T) {
	for _, bus := range []string{"default", "arn:aws:events:us-east-1:123456789012:event-bus/berth"} {
		fake := ebtest.New(t)
		em := eventbridge.New(fake.Client(), bus, nil)
		ev := events.New(events.DetailImageAction, t0, events.Detail{ActionType: "PUSH", RepositoryName: "r", ImageDigest: "sha256:ab", ImageTag: "v1"})
		em.Emit(context.Background(), ev)
		got := fake.Entries()
		if len(got) != 1 || em.Stats() != (events.Stats{Sent: 1}) {
			t.Fatalf("bus %s: entries %+v stats %+v", bus, got, em.Stats())
		}
		e := got[0]
		wantBus := bus
		if bus == "default" {
			wantBus = "" // left out: the default bus
		}
		if e.Source != "berth.registry" || e.DetailType != "Berth Image Action" || e.EventBusName != wantBus || !ebtest.TimeOf(t, e).Equal(t0) {
			t.Fatalf("entry %+v", e)
		}
		want := map[string]any{"version": "1", "action-type": "PUSH", "result": "SUCCESS", "repository-name": "r", "image-digest": "sha256:ab", "image-tag": "v1"}
		if d := ebtest.DetailOf(t, e); !reflect.DeepEqual(d, want) {
			t.Fatalf("detail %v, want %v", d, want)
		}
	}
}

// A failed put is counted and logged, and not retried: PutEvents is not
// idempotent, so a retry could deliver the event twice.
func TestPutEventsFailureCountedNotRetried(t *testing.T) {
	fake := ebtest.New(t)
	em := eventbridge.New(fake.Client(), "", nil)
	ev := events.New(events.DetailImageAction, t0, events.Detail{ActionType: "PUSH", RepositoryName: "r"})
	fake.FailNext(1)
	em.Emit(context.Background(), ev)
	fake.RejectNext(1)
	em.Emit(context.Background(), ev)
	if fake.Calls() != 2 || len(fake.Entries()) != 0 || em.Stats() != (events.Stats{Failed: 2}) {
		t.Fatalf("calls %d entries %d stats %+v", fake.Calls(), len(fake.Entries()), em.Stats())
	}
	em.Emit(context.Background(), ev)
	if len(fake.Entries()) != 1 || em.Stats() != (events.Stats{Sent: 1, Failed: 2}) {
		t.Fatalf("after recovery: entries %d stats %+v", len(fake.Entries()), em.Stats())
	}
}
