package berth

import (
	"strings"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsevents"
	"github.com/aws/aws-cdk-go/awscdk/v2/awseventstargets"
	"github.com/aws/aws-cdk-go/awscdk/v2/awsiam"
	"github.com/aws/jsii-runtime-go"
	"github.com/cdklabs/cdk-nag-go/cdknag/v2"
)

// FnOsvSync is the OSV data sync function (functions/osvsync), deployed
// with scanning.
const FnOsvSync = "osvsync"

// Bucket key prefixes of scanning (docs/deploy.md, "Deploying scanning").
const (
	// ScanPrefix holds the layer indexes, one object per layer digest
	// (pkg/scan's index store on storage.Objects).
	ScanPrefix = "scan/"
	// OsvPrefix holds the OSV exports, osv/<Ecosystem>/all.zip.
	OsvPrefix = "osv/"
)

// The scanner's own artifact types (pkg/sbom): their pushes are not
// scanned (they have no layers), and leaving them out of the rule keeps
// the scanner from invoking itself for every report it attaches.
var scannerArtifactTypes = []string{"application/spdx+json", "application/vnd.cyclonedx+json"}

// Variables of functions/internal/lambdaenv that scanning sets.
const (
	lambdaEnvScanFunction  = "BERTH_SCAN_FUNCTION"
	lambdaEnvOsvEcosystems = "BERTH_OSV_ECOSYSTEMS"
)

// scanSpec is the scan function: S3 ObjectCreated under blobs/ (index the
// layer), registry push events (scan the image), re-match requests from
// the osvsync function.
//
// Its role, by what pkg/scan and the registry handler it pushes through
// do:
//   - blobs/*: GetObject to read layers (and manifests, configs) and
//     PutObject, only because attaching the SBOM and report pushes their
//     blobs (empty config, document, manifest) through the registry,
//     which stores every blob under blobs/. No DeleteObject: superseded
//     reports are unlinked, their bytes left to garbage collection.
//   - scan/*: the layer indexes, read and written whole, and deleted
//     when garbage collection deleted their blob.
//   - osv/*: the synced OSV exports, read only.
//   - ListBucket on the bucket: without it S3 answers a GetObject of a
//     missing key (a layer not indexed yet, no OSV export) with 403 instead
//     of 404, and the OSV exports are found by listing osv/.
//   - The table: what the registry's push and delete paths need (the api
//     function's set: references batch-read, transactions of put, update,
//     delete and condition check) plus the scan records.
//   - events:PutEvents on the registry's bus: "Berth Image Scan" events
//     and the push events of the artifacts it attaches.
func (r *registry) scanSpec(common map[string]*string) fnSpec {
	p := &r.props
	if *p.ScanEnabled && !*p.Events {
		panic("berth: ScanEnabled needs Events: image pushes reach the scanner as registry events (set Events, or ScanEnabled false)")
	}
	table := r.table.TableArn()
	s := fnSpec{
		name: FnScan, description: "Berth scanner: layer indexes (S3 ObjectCreated on blobs/), image reports (push events), re-matches (OSV sync)",
		memory: p.ScanMemoryMiB, ephemeralMiB: p.ScanEphemeralStorageMiB,
		// A layer of a few GB is read at tens of MB/s, and a re-match
		// pass walks every scanned image.
		timeout: awscdk.Duration_Minutes(jsii.Number(15)),
		env: map[string]*string{
			"BERTH_TABLE": common["BERTH_TABLE"], "BERTH_BUCKET": common["BERTH_BUCKET"],
			"BERTH_LOG_LEVEL": common["BERTH_LOG_LEVEL"], lambdaEnvEventBus: r.eventBusARN(),
		},
		statements: []awsiam.PolicyStatement{
			statement("ScanMetadata", concat(ddbRead, ddbWrite), table),
			statement("LayerReadReferrerWrite", []string{"s3:GetObject", "s3:PutObject"}, r.bucketARN("/"+BlobPrefix+"*")),
			statement("LayerIndexes", []string{"s3:DeleteObject", "s3:GetObject", "s3:PutObject"}, r.bucketARN("/"+ScanPrefix+"*")),
			statement("OsvDataRead", []string{"s3:GetObject"}, r.bucketARN("/"+OsvPrefix+"*")),
			statement("ScanBucketList", []string{"s3:ListBucket"}, r.bucketARN("")),
			statement("PutRegistryEvents", []string{"events:PutEvents"}, r.eventBusARN()),
		},
	}
	if r.bktKey != nil {
		s.statements = append(s.statements, statement("BucketKey", []string{"kms:Decrypt", "kms:GenerateDataKey"}, r.bktKey.KeyArn()))
	}
	return s
}

// newScanning adds what scanning needs besides the scan function and its
// bucket notification (newFunctions, notifyScan): the osvsync function
// and its schedule, and the rules that send image pushes and deletions to
// the scanner.
func (r *registry) newScanning() {
	p := &r.props
	if !*p.ScanEnabled {
		return
	}
	scan := r.fns[FnScan]

	// The sync role: the exports and nothing else of the bucket (PutObject
	// covers the multipart upload's create, parts and complete; a failed
	// or rejected download aborts it), ListBucket because a HEAD of a
	// missing export answers 403 without it, and the re-match request.
	ecosystems := strings.Join(p.OsvEcosystems, ",")
	sync := fnSpec{
		name: FnOsvSync, description: "Berth OSV data sync: " + OsvPrefix + "<Ecosystem>/all.zip, then re-match", memory: p.OsvSyncMemoryMiB,
		// The largest exports are hundreds of MB: minutes at worst, and
		// a run stops starting new ecosystems a minute before this.
		timeout: awscdk.Duration_Minutes(jsii.Number(15)),
		env: map[string]*string{
			"BERTH_BUCKET": r.name, "BERTH_LOG_LEVEL": jsii.String(p.LogLevel),
			lambdaEnvOsvEcosystems: jsii.String(ecosystems),
			lambdaEnvScanFunction:  scan.FunctionName(),
		},
		statements: []awsiam.PolicyStatement{
			statement("OsvDataWrite", []string{"s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"}, r.bucketARN("/"+OsvPrefix+"*")),
			statement("OsvBucketList", []string{"s3:ListBucket"}, r.bucketARN("")),
			statement("RequestRematch", []string{"lambda:InvokeFunction"}, scan.FunctionArn()),
		},
	}
	if r.bktKey != nil {
		sync.statements = append(sync.statements, statement("BucketKey", []string{"kms:Decrypt", "kms:GenerateDataKey"}, r.bktKey.KeyArn()))
	}
	r.fns[FnOsvSync] = r.newFunction(sync)
	r.newOsvSchedule()

	// Pushes of images and indexes, not of the scanner's own artifacts.
	// artifact-media-type is an image's config media type, an artifact's
	// artifactType, and absent from an index push; an anything-but
	// matches only a field that is there, hence exists:false beside it
	// (values in one list are alternatives).
	rule := awsevents.NewRule(r.Construct, jsii.String("ScanOnPush"), &awsevents.RuleProps{
		Description: jsii.String("Berth: scan each pushed image (not the scanner's SBOM and report artifacts)"),
		EventBus:    p.EventBus,
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings("berth.registry"),
			DetailType: jsii.Strings("Berth Image Action"),
			Detail: &map[string]interface{}{
				"action-type": []interface{}{"PUSH"},
				"artifact-media-type": []interface{}{
					map[string]interface{}{"exists": false},
					map[string]interface{}{"anything-but": scannerArtifactTypes},
				},
			},
		},
	})
	target := awseventstargets.NewLambdaFunction(scan, &awseventstargets.LambdaFunctionProps{
		RetryAttempts: jsii.Number(2),
		MaxEventAge:   awscdk.Duration_Hours(jsii.Number(6)),
	})
	rule.AddTarget(target)
	// Deletions: a deleted manifest's scan record goes, and so does the
	// layer index of a blob garbage collection deleted (scan.JobOf);
	// without them indexes of collected layers would stay forever.
	awsevents.NewRule(r.Construct, jsii.String("ScanOnDelete"), &awsevents.RuleProps{
		Description: jsii.String("Berth: forget the scans of deleted manifests and the indexes of collected blobs"),
		EventBus:    p.EventBus,
		EventPattern: &awsevents.EventPattern{
			Source:     jsii.Strings("berth.registry"),
			DetailType: jsii.Strings("Berth Image Action", "Berth Blob Action"),
			Detail:     &map[string]interface{}{"action-type": []interface{}{"DELETE"}},
		},
	}).AddTarget(target)

	for _, name := range []string{FnScan, FnOsvSync} {
		cdknag.NagSuppressions_AddResourceSuppressions(r.fns[name].Role(), &[]*cdknag.NagPackSuppression{{
			Id: jsii.String("AwsSolutions-IAM5"),
			Reason: jsii.String("Object permissions are scoped to the registry bucket's key prefixes (" + BlobPrefix + "* blobs, " +
				ScanPrefix + "* layer indexes, " + OsvPrefix + "* OSV exports): keys are digests and ecosystem names known only at run time (" + name + " function)."),
			AppliesTo: &[]interface{}{&cdknag.RegexAppliesTo{Regex: jsii.String(`/^Resource::arn:<AWS::Partition>:s3:::.*\/(blobs|scan|osv)\/\*$/`)}},
		}}, jsii.Bool(true))
	}
}

// newOsvSchedule runs the osvsync function on OsvSyncSchedule.
func (r *registry) newOsvSchedule() {
	r.scheduleFunction(FnOsvSync, "OsvSync", "Berth: sync OSV vulnerability data into the bucket, then re-match", r.props.OsvSyncSchedule)
}
