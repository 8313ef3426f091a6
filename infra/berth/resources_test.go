package berth_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/aws/aws-cdk-go/awscdk/v2"
	"github.com/aws/aws-cdk-go/awscdk/v2/assertions"
	"github.com/aws/jsii-runtime-go"

	"github.com/berth-registry/berth/infra/berth"
)

func like(re string) assertions.Matcher { return assertions.Match_StringLikeRegexp(jsii.String(re)) }

func TestBucket(t *testing.T) {
	s := use(t, defaultStack)
	must(t, "bucket", func() {
		s.template.HasResource(jsii.String("AWS::S3::Bucket"), obj{
			"Properties": obj{
				"PublicAccessBlockConfiguration": obj{
					"BlockPublicAcls": true, "BlockPublicPolicy": true, "IgnorePublicAcls": true, "RestrictPublicBuckets": true,
				},
				"BucketEncryption": obj{"ServerSideEncryptionConfiguration": arr{
					obj{"ServerSideEncryptionByDefault": obj{"SSEAlgorithm": "AES256"}},
				}},
				"OwnershipControls":       obj{"Rules": arr{obj{"ObjectOwnership": "BucketOwnerEnforced"}}},
				"VersioningConfiguration": assertions.Match_Absent(),
				"LifecycleConfiguration": obj{"Rules": arr{
					obj{"Id": "abort-incomplete-multipart", "Status": "Enabled", "AbortIncompleteMultipartUpload": obj{"DaysAfterInitiation": 1}},
					obj{"Id": "expire-upload-staging", "Status": "Enabled", "Prefix": "uploads/", "ExpirationInDays": 1},
				}},
				// blobs/ ObjectCreated goes to the scan function natively.
				"NotificationConfiguration": obj{"LambdaConfigurations": arr{obj{
					"Event":    "s3:ObjectCreated:*",
					"Function": obj{"Fn::GetAtt": arr{like("^RegistryScanFunction"), "Arn"}},
					"Filter":   obj{"S3Key": obj{"Rules": arr{obj{"Name": "prefix", "Value": "blobs/"}}}},
				}}},
				"BucketName": obj{"Fn::Join": arr{"-", assertions.Match_ArrayWith(&arr{"berth", obj{"Ref": "AWS::AccountId"}, obj{"Ref": "AWS::Region"}})}},
			},
			"DependsOn":           arr{like("^RegistryScanFunctionS3Invoke")},
			"DeletionPolicy":      "Retain",
			"UpdateReplacePolicy": "Retain",
		})
	})
	must(t, "S3 may invoke scan for this bucket only", func() {
		s.template.HasResourceProperties(jsii.String("AWS::Lambda::Permission"), obj{
			"Action":        "lambda:InvokeFunction",
			"Principal":     "s3.amazonaws.com",
			"FunctionName":  obj{"Fn::GetAtt": arr{like("^RegistryScanFunction"), "Arn"}},
			"SourceAccount": obj{"Ref": "AWS::AccountId"},
			"SourceArn":     obj{"Fn::Join": arr{"", assertions.Match_ArrayWith(&arr{":s3:::"})}},
		})
	})
	must(t, "TLS-only and CloudFront read of blobs", func() {
		s.template.HasResourceProperties(jsii.String("AWS::S3::BucketPolicy"), obj{
			"PolicyDocument": obj{"Statement": assertions.Match_ArrayWith(&arr{
				assertions.Match_ObjectLike(&obj{"Effect": "Deny", "Action": "s3:*", "Principal": obj{"AWS": "*"},
					"Condition": obj{"Bool": obj{"aws:SecureTransport": "false"}}}),
				obj{"Sid": "CloudFrontReadsBlobs", "Effect": "Allow", "Action": "s3:GetObject",
					"Principal": obj{"Service": "cloudfront.amazonaws.com"},
					"Resource":  obj{"Fn::Join": arr{"", arr{obj{"Fn::GetAtt": arr{like("^RegistryBucket"), "Arn"}}, "/blobs/*"}}},
					"Condition": obj{"StringEquals": obj{"AWS:SourceArn": obj{"Fn::Join": arr{"", assertions.Match_ArrayWith(&arr{
						":distribution/", obj{"Ref": like("^RegistryDistribution")}})}}}}},
			})},
		})
	})

	v := use(t, variantStack)
	must(t, "variant bucket: SSE-KMS with bucket key, destroy, fixed name, no notification", func() {
		v.template.HasResource(jsii.String("AWS::S3::Bucket"), obj{
			"Properties": obj{
				"BucketName": "my-berth-blobs",
				"BucketEncryption": obj{"ServerSideEncryptionConfiguration": arr{obj{
					"BucketKeyEnabled": true,
					"ServerSideEncryptionByDefault": obj{"SSEAlgorithm": "aws:kms",
						"KMSMasterKeyID": obj{"Fn::GetAtt": arr{like("^RegistryBucketKey"), "Arn"}}},
				}}},
				"NotificationConfiguration": assertions.Match_Absent(),
			},
			"DeletionPolicy": "Delete",
		})
		v.template.HasResourceProperties(jsii.String("AWS::KMS::Key"), obj{"EnableKeyRotation": true})
	})
	k := use(t, kmsCdnStack)
	must(t, "SSE-KMS behind CloudFront: the distribution may decrypt, nobody else is added", func() {
		k.template.HasResourceProperties(jsii.String("AWS::KMS::Key"), obj{
			"EnableKeyRotation": true,
			"KeyPolicy": obj{"Statement": assertions.Match_ArrayWith(&arr{obj{
				"Sid": "CloudFrontDecryptsBlobs", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": "*",
				"Principal": obj{"Service": "cloudfront.amazonaws.com"},
				"Condition": obj{"ArnLike": obj{"AWS:SourceArn": obj{"Fn::Join": arr{"", assertions.Match_ArrayWith(&arr{":distribution/*"})}}}},
			}})},
		})
	})
}

func TestTable(t *testing.T) {
	s := use(t, defaultStack)
	must(t, "table", func() {
		s.template.HasResource(jsii.String("AWS::DynamoDB::Table"), obj{
			"Properties": obj{
				"KeySchema": arr{obj{"AttributeName": "PK", "KeyType": "HASH"}, obj{"AttributeName": "SK", "KeyType": "RANGE"}},
				"AttributeDefinitions": arr{
					obj{"AttributeName": "PK", "AttributeType": "S"}, obj{"AttributeName": "SK", "AttributeType": "S"},
				},
				"BillingMode":                      "PAY_PER_REQUEST",
				"TimeToLiveSpecification":          obj{"AttributeName": "expires", "Enabled": true},
				"PointInTimeRecoverySpecification": obj{"PointInTimeRecoveryEnabled": true},
				"DeletionProtectionEnabled":        true,
				// The metadata layer queries the table by PK/SK only.
				"GlobalSecondaryIndexes": assertions.Match_Absent(),
				"ProvisionedThroughput":  assertions.Match_Absent(),
			},
			"DeletionPolicy":      "Retain",
			"UpdateReplacePolicy": "Retain",
		})
	})
	v := use(t, variantStack)
	must(t, "variant table", func() {
		v.template.HasResource(jsii.String("AWS::DynamoDB::Table"), obj{
			"Properties":     obj{"DeletionProtectionEnabled": false},
			"DeletionPolicy": "Delete",
		})
	})
}

func TestHTTPAPI(t *testing.T) {
	s := use(t, defaultStack)
	must(t, "api", func() {
		s.template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Api"), obj{"ProtocolType": "HTTP"})
		s.template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Stage"), obj{
			"StageName":            "$default",
			"AutoDeploy":           true,
			"DefaultRouteSettings": obj{"ThrottlingRateLimit": 500, "ThrottlingBurstLimit": 1000},
			"AccessLogSettings": obj{
				"DestinationArn": obj{"Fn::GetAtt": arr{like("^RegistryApiAccessLogs"), "Arn"}},
				"Format":         like(`"status":"\$context.status"`),
			},
		})
	})
	integration := func(fn string) obj {
		return obj{"Fn::Join": arr{"", arr{"integrations/", obj{"Ref": like("^RegistryHttpApi.*" + fn + "FunctionIntegration")}}}}
	}
	for route, fn := range map[string]string{
		"ANY /v2": "Api", "ANY /v2/{proxy+}": "Api", "GET /token": "Token", "POST /token": "Token",
	} {
		must(t, "route "+route, func() {
			s.template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Route"), obj{
				"RouteKey": route, "AuthorizationType": "NONE", "Target": integration(fn),
			})
		})
	}
	for _, fn := range []string{"Api", "Token"} {
		must(t, fn+" integration", func() {
			s.template.HasResourceProperties(jsii.String("AWS::ApiGatewayV2::Integration"), obj{
				"IntegrationType":      "AWS_PROXY",
				"PayloadFormatVersion": "2.0",
				"IntegrationUri":       obj{"Fn::GetAtt": arr{like("^Registry" + fn + "Function"), "Arn"}},
			})
			s.template.HasResourceProperties(jsii.String("AWS::Lambda::Permission"), obj{
				"Principal":    "apigateway.amazonaws.com",
				"FunctionName": obj{"Fn::GetAtt": arr{like("^Registry" + fn + "Function"), "Arn"}},
			})
		})
	}
}

func TestCloudFront(t *testing.T) {
	s := use(t, defaultStack)
	const cachingDisabled = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
	const allViewerExceptHost = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
	apiBehavior := func(path string) obj {
		b := obj{
			"TargetOriginId":        assertions.Match_AnyValue(),
			"AllowedMethods":        arr{"GET", "HEAD", "OPTIONS", "PUT", "PATCH", "POST", "DELETE"},
			"CachePolicyId":         cachingDisabled,
			"OriginRequestPolicyId": allViewerExceptHost,
			"ViewerProtocolPolicy":  "https-only",
			"Compress":              false,
		}
		if path != "" {
			b["PathPattern"] = path
		}
		return b
	}
	// /v2/* runs the edge function on viewer requests (the OCI 413).
	v2Behavior := apiBehavior("/v2/*")
	v2Behavior["FunctionAssociations"] = arr{obj{"EventType": "viewer-request", "FunctionARN": obj{"Fn::GetAtt": arr{like("^RegistryUploadFunction"), "FunctionARN"}}}}
	must(t, "distribution", func() {
		s.template.HasResourceProperties(jsii.String("AWS::CloudFront::Distribution"), obj{
			"DistributionConfig": obj{
				"Enabled":              true,
				"PriceClass":           "PriceClass_100",
				"HttpVersion":          "http2and3",
				"IPV6Enabled":          true,
				"DefaultCacheBehavior": apiBehavior(""),
				// The API behaviours first (props), then the bucket
				// origin's (AddBehavior): blob GETs, edge uploads.
				"CacheBehaviors": arr{
					apiBehavior("/token"),
					v2Behavior,
					obj{
						"PathPattern":          "/blobs/*",
						"TargetOriginId":       assertions.Match_AnyValue(),
						"AllowedMethods":       arr{"GET", "HEAD"},
						"CachedMethods":        arr{"GET", "HEAD"},
						"CachePolicyId":        obj{"Ref": like("^RegistryBlobCachePolicy")},
						"TrustedKeyGroups":     arr{obj{"Ref": like("^RegistryCdnKeyGroup")}},
						"ViewerProtocolPolicy": "https-only",
						"Compress":             false,
					},
					assertions.Match_ObjectLike(&obj{"PathPattern": "/_upload/*"}),
				},
				"Origins": assertions.Match_ArrayWith(&arr{
					assertions.Match_ObjectLike(&obj{
						"Id":         "berth-api",
						"DomainName": obj{"Fn::Select": arr{2, obj{"Fn::Split": arr{"/", assertions.Match_AnyValue()}}}},
						"CustomOriginConfig": obj{
							"OriginProtocolPolicy": "https-only", "OriginSSLProtocols": arr{"TLSv1.2"}, "OriginReadTimeout": 30,
						},
					}),
					assertions.Match_ObjectLike(&obj{
						"DomainName":            obj{"Fn::GetAtt": arr{like("^RegistryBucket"), "RegionalDomainName"}},
						"OriginAccessControlId": obj{"Fn::GetAtt": arr{like("^RegistryBlobOriginAccessControl"), "Id"}},
						"S3OriginConfig":        obj{"OriginAccessIdentity": "", "OriginReadTimeout": 120},
					}),
				}),
			},
		})
		s.template.HasResourceProperties(jsii.String("AWS::CloudFront::OriginAccessControl"), obj{
			"OriginAccessControlConfig": obj{"OriginAccessControlOriginType": "s3", "SigningBehavior": "always", "SigningProtocol": "sigv4"},
		})
		s.template.HasResourceProperties(jsii.String("AWS::CloudFront::PublicKey"), obj{
			"PublicKeyConfig": obj{"EncodedKey": like("^-----BEGIN PUBLIC KEY-----")},
		})
		s.template.HasResourceProperties(jsii.String("AWS::CloudFront::KeyGroup"), obj{
			"KeyGroupConfig": obj{"Items": arr{obj{"Ref": like("^RegistryCdnPublicKey")}}},
		})
		s.template.HasResourceProperties(jsii.String("AWS::CloudFront::CachePolicy"), obj{
			"CachePolicyConfig": obj{
				"MinTTL": 86400, "DefaultTTL": 2592000, "MaxTTL": 31536000,
				"ParametersInCacheKeyAndForwardedToOrigin": obj{
					"QueryStringsConfig": obj{"QueryStringBehavior": "none"},
					"HeadersConfig":      obj{"HeaderBehavior": "none"},
					"CookiesConfig":      obj{"CookieBehavior": "none"},
				},
			},
		})
	})
	// The key pair's private half: a secret the api function reads.
	must(t, "secret", func() {
		s.template.HasResource(jsii.String("AWS::SecretsManager::Secret"), obj{"DeletionPolicy": "Retain"})
	})

	v := use(t, variantStack)
	must(t, "variant distribution: custom domain, no blob behavior", func() {
		v.template.HasResourceProperties(jsii.String("AWS::CloudFront::Distribution"), obj{
			"DistributionConfig": obj{
				"Aliases": arr{"registry.example.com"},
				"ViewerCertificate": obj{
					"AcmCertificateArn":      like("^arn:aws:acm:us-east-1:"),
					"MinimumProtocolVersion": "TLSv1.2_2021",
					"SslSupportMethod":       "sni-only",
				},
				"CacheBehaviors": arr{apiBehavior("/token"), v2Behavior, assertions.Match_ObjectLike(&obj{"PathPattern": "/_upload/*"})},
			},
		})
	})
}

func TestKeysAndParameters(t *testing.T) {
	s := use(t, defaultStack)
	must(t, "token signing key", func() {
		s.template.HasResource(jsii.String("AWS::KMS::Key"), obj{
			"Properties": obj{
				"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY", "EnableKeyRotation": assertions.Match_Absent(),
			},
			"DeletionPolicy": "Retain",
		})
	})
	must(t, "auth policy parameter", func() {
		s.template.HasResourceProperties(jsii.String("AWS::SSM::Parameter"), obj{
			"Type": "String", "Tier": "Standard", "Value": `{"version":"1","rules":[]}`,
			"Name": obj{"Fn::Join": arr{"", arr{"/berth/", obj{"Ref": "AWS::StackName"}, "/Registry/auth-policy"}}},
		})
	})
}

func TestCleanupSchedule(t *testing.T) {
	s := use(t, defaultStack)
	must(t, "schedule", func() {
		s.template.HasResourceProperties(jsii.String("AWS::Scheduler::Schedule"), obj{
			"ScheduleExpression": "rate(1 hour)",
			"State":              "ENABLED",
			"FlexibleTimeWindow": obj{"Mode": "OFF"},
			"Target": obj{
				"Arn":         obj{"Fn::GetAtt": arr{like("^RegistryCleanupFunction"), "Arn"}},
				"RoleArn":     obj{"Fn::GetAtt": arr{like("^RegistryCleanupScheduleRole"), "Arn"}},
				"RetryPolicy": obj{"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
				"Input":       assertions.Match_AnyValue(),
			},
		})
		s.template.HasResourceProperties(jsii.String("AWS::IAM::Role"), obj{
			"AssumeRolePolicyDocument": obj{"Statement": arr{obj{
				"Action": "sts:AssumeRole", "Effect": "Allow",
				"Principal": obj{"Service": "scheduler.amazonaws.com"},
				"Condition": obj{"StringEquals": obj{"aws:SourceAccount": obj{"Ref": "AWS::AccountId"}}},
			}}},
			"Policies": arr{obj{"PolicyName": "invoke", "PolicyDocument": obj{"Statement": arr{obj{
				"Sid": "InvokeCleanup", "Effect": "Allow", "Action": "lambda:InvokeFunction",
				"Resource": obj{"Fn::GetAtt": arr{like("^RegistryCleanupFunction"), "Arn"}},
			}}, "Version": "2012-10-17"}}},
		})
	})
	// The input decodes as an EventBridge scheduled event.
	for _, r := range s.resources("AWS::Scheduler::Schedule") {
		b, _ := json.Marshal(r["Properties"].(obj)["Target"].(obj)["Input"])
		for _, want := range []string{`Scheduled Event`, `aws.scheduler`, `\u003caws.scheduler.scheduled-time\u003e`, `detail`} {
			if !strings.Contains(string(b), want) {
				t.Errorf("schedule input %s lacks %s", b, want)
			}
		}
	}
}

// RetentionPolicy reaches the cleanup function as BERTH_RETENTION_POLICY,
// empty by default (nothing expires).
func TestRetentionPolicy(t *testing.T) {
	for name, c := range map[string]struct {
		stack func() *synthesized
		want  string
	}{"default": {defaultStack, ""}, "variant": {variantStack, variantRetentionPolicy}} {
		s := use(t, c.stack)
		_, fn := s.function(t, "CleanupFunction")
		env := fn["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)
		if got := env["BERTH_RETENTION_POLICY"]; got != c.want {
			t.Errorf("%s: BERTH_RETENTION_POLICY = %v, want %q", name, got, c.want)
		}
	}
	// Malformed or oversized policies fail the synth, not the first run.
	for name, bad := range map[string]string{
		"not JSON":  `{"rules":[`,
		"too large": `{"rules":[],"description":"` + strings.Repeat("x", berth.MaxRetentionPolicyBytes) + `"}`,
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "RetentionPolicy") {
					t.Errorf("%s: synth recovered %v, want a RetentionPolicy error", name, r)
				}
			}()
			synth(func(_ awscdk.Stack, p *berth.RegistryProps) { p.RetentionPolicy = bad })
		}()
	}
}

// TagImmutability reaches the api function as BERTH_TAG_IMMUTABILITY,
// empty by default (every tag mutable); malformed or oversized rules fail
// the synth.
func TestTagImmutability(t *testing.T) {
	for name, c := range map[string]struct {
		stack func() *synthesized
		want  string
	}{"default": {defaultStack, ""}, "variant": {variantStack, variantTagImmutability}} {
		s := use(t, c.stack)
		_, fn := s.function(t, "ApiFunction")
		env := fn["Properties"].(obj)["Environment"].(obj)["Variables"].(obj)
		if got := env["BERTH_TAG_IMMUTABILITY"]; got != c.want {
			t.Errorf("%s: BERTH_TAG_IMMUTABILITY = %v, want %q", name, got, c.want)
		}
	}
	for name, bad := range map[string]string{
		"not JSON":  `[{"repositories":`,
		"too large": `[{"repositories":["` + strings.Repeat("x", berth.MaxTagImmutabilityBytes) + `"]}]`,
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "TagImmutability") {
					t.Errorf("%s: synth recovered %v, want a TagImmutability error", name, r)
				}
			}()
			synth(func(_ awscdk.Stack, p *berth.RegistryProps) { p.TagImmutability = bad })
		}()
	}
}

func TestAlarms(t *testing.T) {
	s := use(t, defaultStack)
	must(t, "api 5xx rate", func() {
		s.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj{
			"ComparisonOperator": "GreaterThanOrEqualToThreshold", "Threshold": 5, "EvaluationPeriods": 2,
			"TreatMissingData": "notBreaching",
			"Metrics": assertions.Match_ArrayWith(&arr{
				obj{"Id": "expr_1", "Label": "5xx rate (%)", "Expression": "IF(requests > 0, 100 * errors / requests, 0)", "ReturnData": true},
				assertions.Match_ObjectLike(&obj{"Id": "errors", "MetricStat": obj{
					"Metric": obj{"Namespace": "AWS/ApiGateway", "MetricName": "5xx", "Dimensions": arr{obj{"Name": "ApiId", "Value": obj{"Ref": like("^RegistryHttpApi")}}}},
					"Period": 300, "Stat": "Sum"}}),
				assertions.Match_ObjectLike(&obj{"Id": "requests", "MetricStat": assertions.Match_ObjectLike(&obj{
					"Metric": assertions.Match_ObjectLike(&obj{"MetricName": "Count"})})}),
			}),
		})
	})
	for _, fn := range []string{"Api", "Token", "Scan", "Cleanup"} {
		for _, m := range []string{"Errors", "Throttles"} {
			must(t, fn+" "+m, func() {
				s.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj{
					"Namespace": "AWS/Lambda", "MetricName": m, "Statistic": "Sum", "Period": 300, "Threshold": 1,
					"Dimensions":         arr{obj{"Name": "FunctionName", "Value": obj{"Ref": like("^Registry" + fn + "Function")}}},
					"ComparisonOperator": "GreaterThanOrEqualToThreshold",
					"AlarmActions":       assertions.Match_Absent(),
				})
			})
		}
	}
	must(t, "table throttles", func() {
		s.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj{
			"Threshold": 1,
			"Metrics": assertions.Match_ArrayWith(&arr{
				obj{"Id": "expr_1", "Label": "throttle events", "Expression": "reads + writes", "ReturnData": true},
				assertions.Match_ObjectLike(&obj{"Id": "reads", "MetricStat": assertions.Match_ObjectLike(&obj{"Metric": obj{
					"Namespace": "AWS/DynamoDB", "MetricName": "ReadThrottleEvents",
					"Dimensions": arr{obj{"Name": "TableName", "Value": obj{"Ref": like("^RegistryTable")}}}}})}),
				assertions.Match_ObjectLike(&obj{"Id": "writes", "MetricStat": assertions.Match_ObjectLike(&obj{"Metric": assertions.Match_ObjectLike(&obj{
					"MetricName": "WriteThrottleEvents"})})}),
			}),
		})
	})
	// The functions' own figures (pkg/metrics, EMF in namespace Berth).
	for fn, m := range map[string]string{"Cleanup": "GCFailures", "Scan": "ScanFailures"} {
		must(t, m, func() {
			s.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj{
				"Namespace": "Berth", "MetricName": m, "Statistic": "Sum", "Period": 300, "Threshold": 1, "EvaluationPeriods": 1,
				"Dimensions": arr{obj{"Name": "Function", "Value": obj{"Ref": like("^Registry" + fn + "Function")}}},
			})
		})
	}
	must(t, "SDK throttles", func() {
		s.template.HasResourceProperties(jsii.String("AWS::CloudWatch::Alarm"), obj{
			"Threshold": 10,
			"Metrics": assertions.Match_ArrayWith(&arr{
				obj{"Id": "expr_1", "Label": "throttled attempts", "Expression": "ddb + s3", "ReturnData": true},
				assertions.Match_ObjectLike(&obj{"Id": "ddb", "MetricStat": assertions.Match_ObjectLike(&obj{"Metric": obj{
					"Namespace": "Berth", "MetricName": "DynamoDBThrottles",
					"Dimensions": arr{obj{"Name": "Function", "Value": obj{"Ref": like("^RegistryApiFunction")}}}}})}),
				assertions.Match_ObjectLike(&obj{"Id": "s3", "MetricStat": assertions.Match_ObjectLike(&obj{"Metric": assertions.Match_ObjectLike(&obj{
					"MetricName": "S3Throttles"})})}),
			}),
		})
	})
	// With a topic every alarm notifies it on ALARM and OK.
	v := use(t, variantStack)
	// Scanning off: no scan alarm.
	for id, a := range v.resources("AWS::CloudWatch::Alarm") {
		if b, _ := json.Marshal(a); strings.Contains(string(b), "ScanFailures") {
			t.Errorf("variant has a scan alarm %s", id)
		}
	}
	for id, a := range v.resources("AWS::CloudWatch::Alarm") {
		p := a["Properties"].(obj)
		for _, k := range []string{"AlarmActions", "OKActions"} {
			b, _ := json.Marshal(p[k])
			if !strings.Contains(string(b), `"Ref":"Alarms`) {
				t.Errorf("variant alarm %s %s = %s, want the topic", id, k, b)
			}
		}
	}
}

func TestOutputs(t *testing.T) {
	// outputs maps RegistryUrl, BucketName, ... (logical id minus the
	// construct prefix and hash) to the output's value.
	outputs := func(s *synthesized) map[string]interface{} {
		out := map[string]interface{}{}
		for id, o := range s.json["Outputs"].(obj) {
			out[strings.TrimPrefix(id, "Registry")[:len(id)-len("Registry")-8]] = o.(obj)["Value"]
		}
		return out
	}
	s := use(t, defaultStack)
	got := outputs(s)
	if want := []string{"BucketName", "CdnPrivateKeySecretArn", "RegistryUrl", "TableName"}; !reflect.DeepEqual(keys(toObj(got)), want) {
		t.Errorf("outputs %v, want %v", keys(toObj(got)), want)
	}
	for what, value := range map[string]interface{}{
		"RegistryUrl": obj{"Fn::Join": arr{"", arr{"https://", obj{"Fn::GetAtt": arr{like("^RegistryDistribution"), "DomainName"}}}}},
		"BucketName":  obj{"Ref": like("^RegistryBucket")},
		"TableName":   obj{"Ref": like("^RegistryTable")},
		"SecretArn":   obj{"Ref": like("^RegistryCdnPrivateKey")},
	} {
		must(t, "output "+what, func() { s.template.HasOutput(jsii.String("*"), obj{"Value": value}) })
	}
	if url := outputs(use(t, variantStack))["RegistryUrl"]; url != "https://registry.example.com" {
		t.Errorf("variant RegistryUrl = %v", url)
	}
}

// TestCdkNag: AwsSolutions reports nothing that is not suppressed with a
// reason, in both configurations (a finding would also fail synth).
func TestCdkNag(t *testing.T) {
	for name, s := range map[string]*synthesized{"default": use(t, defaultStack), "variant": use(t, variantStack)} {
		a := assertions.Annotations_FromStack(s.stack)
		// The messages are decoded through JSON: their Go type (cxapi's) is
		// deprecated in favour of a package the Go bindings do not ship.
		for level, found := range map[string]interface{}{
			"error":   a.FindError(jsii.String("*"), like("AwsSolutions-")),
			"warning": a.FindWarning(jsii.String("*"), like("AwsSolutions-")),
		} {
			var msgs []struct {
				ID    string `json:"id"`
				Entry struct {
					Data interface{} `json:"data"`
				} `json:"entry"`
			}
			b, _ := json.Marshal(found)
			if err := json.Unmarshal(b, &msgs); err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				t.Errorf("%s stack: unsuppressed cdk-nag %s at %s: %v", name, level, m.ID, m.Entry.Data)
			}
			t.Logf("%s stack: %d unsuppressed cdk-nag %ss", name, len(msgs), level)
		}
		suppressed := 0
		for _, r := range s.json["Resources"].(obj) {
			if md, ok := r.(obj)["Metadata"].(obj); ok {
				if n, ok := md["cdk_nag"].(obj); ok {
					for _, rs := range n["rules_to_suppress"].(arr) {
						if reason, _ := rs.(obj)["reason"].(string); len(reason) < 40 {
							t.Errorf("%s stack: suppression %v has no real reason", name, rs)
						}
						suppressed++
					}
				}
			}
		}
		t.Logf("%s stack: %d suppressions (each with a reason)", name, suppressed)
	}
}

// TestDashboard checks the dashboard shows every figure the issue asks for:
// API Gateway's requests, errors and latency, each function's errors,
// throttles and duration, DynamoDB throttling, and the functions' EMF
// metrics (pushes, pulls, bytes, uploads, tokens, SDK retries, GC, scan).
func TestDashboard(t *testing.T) {
	for name, s := range map[string]*synthesized{"default": use(t, defaultStack), "variant": use(t, variantStack)} {
		dashes := s.resources("AWS::CloudWatch::Dashboard")
		if len(dashes) != 1 {
			t.Fatalf("%s: %d dashboards", name, len(dashes))
		}
		var body string
		for _, d := range dashes {
			b, _ := json.Marshal(d["Properties"].(obj)["DashboardBody"])
			body = string(b)
		}
		want := []string{`\"AWS/ApiGateway\",\"Count\"`, `\"5xx\"`, `\"Latency\"`, `\"p99\"`,
			`\"AWS/Lambda\",\"Errors\"`, `\"AWS/Lambda\",\"Throttles\"`, `\"AWS/Lambda\",\"Duration\"`,
			`\"AWS/DynamoDB\",\"ReadThrottleEvents\"`, `\"AWS/DynamoDB\",\"WriteThrottleEvents\"`}
		for _, m := range []string{"ManifestPushes", "ManifestPulls", "BytesUploaded", "BytesRedirected", "UploadSessionsStarted",
			"UploadSessionsEnded", "TokenGrants", "TokenDenials", "DynamoDBRetries", "DynamoDBThrottles", "S3Retries", "S3Throttles",
			"GCBlobsDeleted", "GCBytesFreed", "GCFailures"} {
			want = append(want, `\"Berth\",\"`+m+`\"`)
		}
		scan := []string{"ScanLayersIndexed", "ScanLayerErrors", "ScanImagesReported", "ScanFailures"}
		for _, w := range want {
			if !strings.Contains(body, w) {
				t.Errorf("%s dashboard lacks %s", name, w)
			}
		}
		for _, m := range scan {
			if has := strings.Contains(body, `\"Berth\",\"`+m+`\"`); has != (name == "default") {
				t.Errorf("%s dashboard: %s shown = %v", name, m, has)
			}
		}
	}
}
