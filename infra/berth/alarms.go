package berth

import (
	"fmt"
	"sort"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatch"
	"github.com/aws/aws-cdk-go/awscdk/v2/awscloudwatchactions"
	"github.com/aws/jsii-runtime-go"
)

// newAlarms raises alarms on the API's 5xx rate, each function's errors and
// throttles, and DynamoDB throttling, notifying AlarmTopic when set.
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

	names := make([]string, 0, len(r.fns))
	for name := range r.fns {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
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
}
