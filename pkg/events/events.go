// Package events is the registry's event vocabulary (docs/events.md): the
// versioned Event every emitter delivers, and the emitters that need no
// AWS SDK (a CloudEvents webhook and a JSON-lines file). The EventBridge
// emitter lives in pkg/events/eventbridge so that this package, which
// pkg/registry imports, stays free of the SDK.
//
// Field names follow Amazon ECR's "ECR Image Action" event wherever they
// mean the same thing (action-type, result, repository-name, image-digest,
// image-tag, manifest-media-type, artifact-media-type), so an EventBridge
// rule written for ECR ports by changing source and detail-type only.
package events

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Schema constants. Version is the detail's schema version: a change that
// removes or renames a field, or changes a field's meaning, raises it;
// adding a field does not.
const (
	Version = "1"
	// Source is the EventBridge source ("aws." is reserved for AWS) and the
	// CloudEvents source.
	Source = "berth.registry"

	// DetailImageAction: a manifest pushed, a tag or manifest deleted.
	DetailImageAction = "Berth Image Action"
	// DetailBlobAction: garbage collection deleted a blob's bytes. Kept
	// apart from image actions so that a rule written for ECR's DELETE
	// events never sees a repository-less blob deletion.
	DetailBlobAction = "Berth Blob Action"
	// DetailImageScan: the scanner finished (or failed) a scan of an image
	// manifest (docs/scanning.md). Its detail mirrors ECR's "ECR Image
	// Scan": scan-status, repository-name, image-digest, image-tags,
	// finding-severity-counts.
	DetailImageScan = "Berth Image Scan"

	ActionPush   = "PUSH"
	ActionDelete = "DELETE"
	// ActionScan is the action-type of "Berth Image Scan" events (ECR's
	// scan event has no action-type; Berth's detail always carries one).
	ActionScan = "SCAN"

	// Scan statuses, ECR's words.
	ScanComplete = "COMPLETE"
	ScanFailed   = "FAILED"

	ResultSuccess = "SUCCESS"

	// Reasons of deletions the registry made itself. A deletion a client
	// asked for carries no reason.
	ReasonRetention = "retention"
	ReasonGC        = "gc"
)

// Detail is the event's payload: EventBridge's "detail", CloudEvents'
// "data". Empty fields are left out.
type Detail struct {
	Version           string `json:"version"`
	EventID           string `json:"event-id"`
	ActionType        string `json:"action-type"`
	Result            string `json:"result"`
	RepositoryName    string `json:"repository-name,omitempty"`
	ImageDigest       string `json:"image-digest,omitempty"`
	ImageTag          string `json:"image-tag,omitempty"`
	ManifestMediaType string `json:"manifest-media-type,omitempty"`
	ArtifactMediaType string `json:"artifact-media-type,omitempty"`
	// Berth's own fields.
	// ImageTags are the tags a manifest deletion removed with it.
	ImageTags []string `json:"image-tags,omitempty"`
	// BlobDigest and Size: the blob a garbage collection deleted.
	BlobDigest string `json:"blob-digest,omitempty"`
	Size       int64  `json:"size,omitempty"`
	// Actor is the authenticated principal (the token's subject) of the
	// request; empty without authentication and for the registry's own
	// deletions. Never a credential.
	Actor string `json:"actor,omitempty"`
	// Reason says why the registry deleted something on its own
	// (ReasonRetention, ReasonGC); RetentionRule is the priority of the
	// lifecycle rule that expired the image.
	Reason        string `json:"reason,omitempty"`
	RetentionRule int    `json:"retention-rule,omitempty"`
	// ScanStatus and FindingSeverityCounts: a scan's outcome and its
	// findings by severity (ECR's fields; the counts are present, maybe
	// empty, on every COMPLETE scan). ScanDataVersion is the vulnerability
	// data the findings were matched with; ScanError why a scan failed.
	ScanStatus            string          `json:"scan-status,omitempty"`
	FindingSeverityCounts *SeverityCounts `json:"finding-severity-counts,omitempty"`
	ScanDataVersion       string          `json:"scan-data-version,omitempty"`
	ScanError             string          `json:"scan-error,omitempty"`
}

// SeverityCounts are findings by severity (CRITICAL, HIGH, MEDIUM, LOW,
// UNKNOWN), as in ECR's finding-severity-counts.
type SeverityCounts map[string]int

// Event is one occurrence, as every emitter delivers it.
type Event struct {
	ID         string
	Time       time.Time
	DetailType string
	Detail     Detail
}

// New returns an event of detailType with a fresh id, stamped at now; it
// fills Detail's version, id and result.
func New(detailType string, now time.Time, d Detail) Event {
	id := NewID()
	d.Version, d.EventID, d.Result = Version, id, ResultSuccess
	return Event{ID: id, Time: now.UTC(), DetailType: detailType, Detail: d}
}

// NewID returns a random UUID (version 4).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// Emitter delivers events. Emit never fails the caller: an emitter logs
// and counts what it could not deliver (Stats).
type Emitter interface {
	Emit(ctx context.Context, ev Event)
}

// Multi emits every event to each emitter in turn.
type Multi []Emitter

// Emit implements Emitter.
func (m Multi) Emit(ctx context.Context, ev Event) {
	for _, e := range m {
		e.Emit(ctx, ev)
	}
}

// BlobDeletion is the event of a blob whose bytes garbage collection
// deleted (size 0 when no longer known).
func BlobDeletion(now time.Time, digest string, size int64) Event {
	return New(DetailBlobAction, now, Detail{ActionType: ActionDelete, BlobDigest: digest, Size: size, Reason: ReasonGC})
}

// RetentionDeletion is the event of a manifest a retention rule expired,
// with the tags that went with it.
func RetentionDeletion(now time.Time, repo, digest, mediaType string, tags []string, rule int) Event {
	return New(DetailImageAction, now, Detail{
		ActionType: ActionDelete, RepositoryName: repo, ImageDigest: digest, ManifestMediaType: mediaType,
		ImageTags: tags, Reason: ReasonRetention, RetentionRule: rule,
	})
}
