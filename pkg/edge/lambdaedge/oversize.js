'use strict';
// Berth: Lambda@Edge origin response on the upload behaviours
// (/v2/*/blobs/uploads/* and /_upload/*). Node.js, CommonJS, no modules.
//
// A request body too big for one Lambda invocation never reaches the
// registry: API Gateway answers it with its own 413 ({"message":...}),
// which no client reads as an OCI error. The CloudFront Function answers
// bodies that declare their Content-Length first; a chunked body (podman,
// skopeo, classic Docker) has none and reaches API Gateway. This function
// rewrites exactly that answer: a 413 WITHOUT Docker-Distribution-API-Version
// (every answer of the registry carries it, so Berth's own 413s pass
// unchanged) becomes an OCI SIZE_INVALID error that names `berth push`.
// Origin-response functions run for 4xx and may replace the body, which
// they cannot read (docs/lambda.md, "The oversize 413 at the edge").

// apigw.MaxBodyBytes; a Go test keeps the two equal.
const LIMIT = 4404019;
const DOCS = 'https://github.com/berth-registry/berth/blob/main/docs/clients.md#upload-paths';
// The path the origin was sent: the registry's upload URLs, or an edge
// upload Location the CloudFront Function left as it was.
const UPLOAD = /^\/(v2\/.+\/blobs\/uploads(\/|$)|_upload\/)/;

exports.handler = async (event) => {
    const cf = event.Records[0].cf;
    const res = cf.response;
    if (res.status !== '413' || res.headers['docker-distribution-api-version'] || !UPLOAD.test(cf.request.uri)) {
        return res;
    }
    const body = JSON.stringify({ errors: [{
        code: 'SIZE_INVALID',
        message: `request body over ${LIMIT} bytes, the most the registry API takes in one request; ` +
            'push large layers with `berth push` (direct to S3), a client that uploads with POST then one PUT, ' +
            'or chunked PATCH uploads (' + DOCS + ')',
        detail: { limit: LIMIT, docs: DOCS }
    }] });
    // The origin's length and type describe the body being replaced.
    const headers = {};
    Object.keys(res.headers).forEach((n) => {
        if (n !== 'content-length' && n !== 'content-type' && n !== 'content-encoding') {
            headers[n] = res.headers[n];
        }
    });
    headers['content-type'] = [{ key: 'Content-Type', value: 'application/json' }];
    return { status: '413', statusDescription: 'Payload Too Large', headers: headers, body: body, bodyEncoding: 'text' };
};
