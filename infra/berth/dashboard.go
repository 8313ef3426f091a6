package berth

import (
	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/jsii-runtime-go"

	"github.com/berth-registry/berth/pkg/metrics"
)

// berthMetric is one of the functions' EMF metrics (pkg/metrics; namespace
// Berth, dimension Function = the function's name, which the functions read
// from AWS_LAMBDA_FUNCTION_NAME). Summed: every EMF value is a count or a
// byte total of one invocation.
func (r *registry) berthMetric(fn, name string) awscloudwatch.IMetric {
	return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
		Namespace:     jsii.String(metrics.Namespace),
		MetricName:    jsii.String(name),
		DimensionsMap: &map[string]*string{"Function": r.fns[fn].FunctionName()},
		Period:        awscdk.Duration_Minutes(jsii.Number(5)),
		Statistic:     jsii.String("Sum"),
	})
}

// newDashboard builds the "what is the registry doing" dashboard: the API
// (API Gateway's own metrics), pushes, pulls and bytes, upload sessions,
// tokens, each function's errors, throttles and duration, DynamoDB and
// SDK-level throttling, and the garbage collection and scan figures. It
// reads metrics only, so it needs no IAM of its own.
func (r *registry) newDashboard() {
	period := awscdk.Duration_Minutes(jsii.Number(5))
	sum := &awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("Sum")}
	graph := func(title string, width float64, left ...awscloudwatch.IMetric) awscloudwatch.IWidget {
		return awscloudwatch.NewGraphWidget(&awscloudwatch.GraphWidgetProps{
			Title: jsii.String(title), Width: jsii.Number(width), Height: jsii.Number(6), Left: &left,
		})
	}
	d := awscloudwatch.NewDashboard(r.Construct, jsii.String("Dashboard"), &awscloudwatch.DashboardProps{
		DefaultInterval: awscdk.Duration_Hours(jsii.Number(24)),
	})
	d.AddWidgets(
		graph("API requests", 8, r.api.MetricCount(sum)),
		graph("API errors", 8, r.api.MetricServerError(sum), r.api.MetricClientError(sum)),
		graph("API latency", 8,
			r.api.MetricLatency(&awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("p50")}),
			r.api.MetricLatency(&awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("p99")})),
	)
	d.AddWidgets(
		graph("Pushes and pulls (manifests)", 8, r.berthMetric(FnAPI, metrics.ManifestPushes), r.berthMetric(FnAPI, metrics.ManifestPulls)),
		graph("Bytes uploaded and redirected", 8, r.berthMetric(FnAPI, metrics.BytesUploaded), r.berthMetric(FnAPI, metrics.BytesRedirected)),
		graph("Upload sessions and tokens", 8,
			r.berthMetric(FnAPI, metrics.UploadSessionsStarted), r.berthMetric(FnAPI, metrics.UploadSessionsEnded),
			r.berthMetric(FnToken, metrics.TokenGrants), r.berthMetric(FnToken, metrics.TokenDenials)),
	)
	var errs, throttles, durations []awscloudwatch.IMetric
	for _, name := range sortedKeys(r.fns) {
		fn := r.fns[name]
		label := &awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("Sum"), Label: jsii.String(name)}
		errs = append(errs, fn.MetricErrors(label))
		throttles = append(throttles, fn.MetricThrottles(label))
		durations = append(durations, fn.MetricDuration(&awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("p99"), Label: jsii.String(name + " p99")}))
	}
	d.AddWidgets(
		graph("Function errors", 8, errs...),
		graph("Function throttles", 8, throttles...),
		graph("Function duration", 8, durations...),
	)
	ddb := func(name string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace: jsii.String("AWS/DynamoDB"), MetricName: jsii.String(name),
			DimensionsMap: &map[string]*string{"TableName": r.table.TableName()}, Period: period, Statistic: jsii.String("Sum"),
		})
	}
	d.AddWidgets(
		graph("DynamoDB throttle events", 8, ddb("ReadThrottleEvents"), ddb("WriteThrottleEvents")),
		graph("SDK retries and throttles (api)", 8,
			r.berthMetric(FnAPI, metrics.DynamoDBRetries), r.berthMetric(FnAPI, metrics.DynamoDBThrottles),
			r.berthMetric(FnAPI, metrics.S3Retries), r.berthMetric(FnAPI, metrics.S3Throttles)),
		graph("Garbage collection", 8,
			r.berthMetric(FnCleanup, metrics.GCBlobsDeleted), r.berthMetric(FnCleanup, metrics.GCBytesFreed),
			r.berthMetric(FnCleanup, metrics.GCFailures)),
	)
	if _, ok := r.fns[FnScan]; ok {
		d.AddWidgets(graph("Vulnerability scanning", 24,
			r.berthMetric(FnScan, metrics.ScanLayersIndexed), r.berthMetric(FnScan, metrics.ScanLayerErrors),
			r.berthMetric(FnScan, metrics.ScanImagesReported), r.berthMetric(FnScan, metrics.ScanFailures)))
	}
}
