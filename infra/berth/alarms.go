package berth

import (
	"fmt"
	"sort"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/jsii-runtime-go"

	"github.com/berth-registry/berth/pkg/metrics"
)

// newAlarms raises alarms on the API's 5xx rate, each function's errors and
// throttles, DynamoDB throttling (the table's and what the api function's
// SDK retried), failed garbage collection passes and failed scans,
// notifying AlarmTopic when set.
func (r *registry) newAlarms() {
	p := &r.props
	period := awscdk.Duration_Minutes(jsii.Number(5))
	sum := &awscloudwatch.MetricOptions{Period: period, Statistic: jsii.String("Sum")}
	alarm := func(id, desc string, metric awscloudwatch.IMetric, threshold float64, periods float64) {
		a := awscloudwatch.NewAlarm(r.Construct, jsii.String(id), &awscloudwatch.AlarmProps{
			AlarmDescription:   jsii.String(desc),
			Metric:             metric,
			Threshold:          jsii.Number(threshold),
			EvaluationPeriods:  jsii.Number(periods),
			ComparisonOperator: awscloudwatch.ComparisonOperator_GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
			TreatMissingData:   awscloudwatch.TreatMissingData_NOT_BREACHING,
		})
		if p.AlarmTopic != nil {
			action := awscloudwatchactions.NewSnsAction(p.AlarmTopic)
			a.AddAlarmAction(action)
			a.AddOkAction(action)
		}
	}

	alarm("Api5xxRateAlarm", fmt.Sprintf("Berth API: 5xx responses at or above %g%% of requests", p.Api5xxRatePercent),
		awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String("IF(requests > 0, 100 * errors / requests, 0)"),
			Label:      jsii.String("5xx rate (%)"),
			Period:     period,
			UsingMetrics: &map[string]awscloudwatch.IMetric{
				"errors":   r.api.MetricServerError(sum),
				"requests": r.api.MetricCount(sum),
			},
		}), p.Api5xxRatePercent, 2)

	for _, name := range sortedKeys(r.fns) {
		fn, id := r.fns[name], logicalID(name)
		alarm(id+"ErrorsAlarm", "Berth "+name+" function: invocation errors", fn.MetricErrors(sum), 1, 1)
		alarm(id+"ThrottlesAlarm", "Berth "+name+" function: throttled invocations", fn.MetricThrottles(sum), 1, 1)
	}

	ddb := func(name string) awscloudwatch.IMetric {
		return awscloudwatch.NewMetric(&awscloudwatch.MetricProps{
			Namespace:     jsii.String("AWS/DynamoDB"),
			MetricName:    jsii.String(name),
			DimensionsMap: &map[string]*string{"TableName": r.table.TableName()},
			Period:        period,
			Statistic:     jsii.String("Sum"),
		})
	}
	alarm("TableThrottlesAlarm", "Berth table: throttled reads or writes",
		awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String("reads + writes"),
			Label:      jsii.String("throttle events"),
			Period:     period,
			UsingMetrics: &map[string]awscloudwatch.IMetric{
				"reads":  ddb("ReadThrottleEvents"),
				"writes": ddb("WriteThrottleEvents"),
			},
		}), 1, 1)

	// Throttling the table metrics above do not show: S3 SlowDown and the
	// throttled attempts the SDK retried (pkg/metrics, EMF). A few are
	// absorbed by retries; a steady stream slows pushes and pulls.
	alarm("SdkThrottlesAlarm", "Berth api function: DynamoDB or S3 requests throttled (SDK attempts)",
		awscloudwatch.NewMathExpression(&awscloudwatch.MathExpressionProps{
			Expression: jsii.String("ddb + s3"),
			Label:      jsii.String("throttled attempts"),
			Period:     period,
			UsingMetrics: &map[string]awscloudwatch.IMetric{
				"ddb": r.berthMetric(FnAPI, metrics.DynamoDBThrottles),
				"s3":  r.berthMetric(FnAPI, metrics.S3Throttles),
			},
		}), 10, 1)
	// A failed pass leaves its work to the next one; two in a row (two
	// hours with the hourly schedule) means it is not catching up.
	alarm("GcFailuresAlarm", "Berth garbage collection: passes failing", r.berthMetric(FnCleanup, metrics.GCFailures), 1, 1)
	if _, ok := r.fns[FnScan]; ok {
		alarm("ScanFailuresAlarm", "Berth scanning: scan invocations failing", r.berthMetric(FnScan, metrics.ScanFailures), 1, 1)
	}
}

// sortedKeys returns m's keys in order, for a stable template.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
