// Berth edge upload path (docs/architecture.md, "Blobs that arrive outside the API"). CloudFront
// Functions runtime 2.0. One file, attached as viewer request to /_upload/*
// and /v2/*, and as viewer response to /_upload/*. The Go side of the token
// format is pkg/edge/token.go; its tests and this file's check each other.
import crypto from 'crypto';
import cf from 'cloudfront';

const kvs = cf.kvs();
const API_ORIGIN = 'berth-api';
// Blob bytes one request carries through API Gateway and Lambda (6 MB event,
// base64): above it API Gateway answers a non-OCI 413 of its own.
const LAMBDA_MAX = 4404019;
// S3's single PUT limit (5 GiB).
const S3_MAX = 5368709120;
const PREFIX = '/_upload/';
const B64URL = /^[A-Za-z0-9_-]+$/;
const KID = /^[A-Za-z0-9_-]{1,16}$/;
const REPO = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$/;
const SHA256 = /^sha256:([0-9a-f]{64})$/;

function ociError(status, desc, code, message, detail) {
    return {
        statusCode: status,
        statusDescription: desc,
        headers: { 'content-type': { value: 'application/json' } },
        body: {
            encoding: 'text',
            data: JSON.stringify({ errors: [{ code: code, message: message, detail: detail || {} }] })
        }
    };
}

function tooLarge(limit, path) {
    return ociError(413, 'Payload Too Large', 'SIZE_INVALID',
        `request body over ${limit} bytes, the most ${path} takes in one request; ` +
        'push large layers with `berth push` (direct to S3), a client that uploads with POST then one PUT, or chunked PATCH uploads',
        { limit: limit });
}

function header(obj, name) {
    const h = obj.headers[name];
    return h ? h.value : undefined;
}

// contentLength: -1 when the request does not say (no body, or chunked).
function contentLength(req) {
    const v = header(req, 'content-length');
    if (v === undefined || !/^[0-9]{1,16}$/.test(v)) {
        return -1;
    }
    return parseInt(v, 10);
}

function b64urlDecode(s) {
    let b = s.replace(/-/g, '+').replace(/_/g, '/');
    while (b.length % 4 !== 0) {
        b += '=';
    }
    return Buffer.from(b, 'base64').toString('utf8');
}

// Constant time in the length of the expected value: no early exit on the
// first differing character, so timing does not leak the signature.
function safeEqual(a, b) {
    if (a.length !== b.length) {
        return false;
    }
    let d = 0;
    for (let i = 0; i < a.length; i++) {
        d |= a.charCodeAt(i) ^ b.charCodeAt(i);
    }
    return d === 0;
}

// claims decodes a token's payload without checking it: only for a token
// the viewer request already verified.
function claims(payload) {
    let c;
    try {
        c = JSON.parse(b64urlDecode(payload));
    } catch (e) {
        return null;
    }
    if (!c || typeof c.r !== 'string' || typeof c.u !== 'string' || typeof c.e !== 'number' ||
        c.r.length > 255 || !REPO.test(c.r) || !B64URL.test(c.u)) {
        return null;
    }
    return c;
}

// verify returns {claims} or {status, code, message}: 404 for anything that
// is not a live token of ours, 403 for a bad signature. Never 401: clients
// (containerd) take a 401 as "refresh the bearer token" and retry.
function unknown(message) {
    return { status: 404, desc: 'Not Found', code: 'BLOB_UPLOAD_UNKNOWN', message: message };
}

async function verify(token) {
    const parts = token.split('.');
    // Same checks, in the same order, as edge.Verify: the payload is
    // decoded only once the signature holds.
    if (parts.length !== 3 || !KID.test(parts[0]) || parts[1] === '' || parts[2] === '') {
        return unknown('malformed upload token');
    }
    let secret;
    try {
        secret = await kvs.get('upload-key-' + parts[0]);
    } catch (e) {
        return unknown('upload token key unknown (rotated out); start the upload again');
    }
    const want = crypto.createHmac('sha256', secret).update(parts[0] + '.' + parts[1]).digest('base64url');
    if (!safeEqual(want, parts[2])) {
        return { status: 403, desc: 'Forbidden', code: 'DENIED', message: 'upload token signature mismatch' };
    }
    const c = claims(parts[1]);
    if (!c) {
        return unknown('malformed upload token');
    }
    if (Date.now() >= c.e * 1000) {
        return unknown('upload token expired; start the upload again');
    }
    return { claims: c };
}

function decodeOnce(v) {
    try {
        return decodeURIComponent(v);
    } catch (e) {
        return v;
    }
}

async function uploadRequest(req) {
    const token = req.uri.slice(PREFIX.length);
    const v = await verify(token);
    if (!v.claims) {
        return ociError(v.status, v.desc, v.code, v.message, {});
    }
    const c = v.claims;
    const size = contentLength(req);
    const q = req.querystring.digest;
    const digest = q ? decodeOnce(q.value) : '';
    const m = SHA256.exec(digest);
    if (req.method === 'PUT' && size > 0 && m) {
        if (size > S3_MAX) {
            return tooLarge(S3_MAX, 'S3');
        }
        // Straight to S3: only what S3 needs, so no client x-amz-* header
        // (or Authorization, which OAC replaces) reaches it. The checksum
        // makes S3 itself refuse bytes that do not match the digest.
        const h = {};
        ['host', 'content-length', 'transfer-encoding', 'via', 'content-type'].forEach((n) => {
            if (req.headers[n]) {
                h[n] = req.headers[n];
            }
        });
        h['x-amz-checksum-sha256'] = { value: Buffer.from(m[1], 'hex').toString('base64') };
        h['x-amz-meta-berth-upload'] = { value: c.u };
        h['x-amz-meta-berth-repo'] = { value: c.r };
        req.headers = h;
        req.uri = '/blobs/sha256/' + m[1];
        req.querystring = {};
        return req;
    }
    // PATCH, GET, DELETE, PUT without a body, other digests: the API's own
    // upload URL, which holds the session.
    if (size > LAMBDA_MAX) {
        return tooLarge(LAMBDA_MAX, 'the registry API');
    }
    Object.keys(req.headers).forEach((n) => {
        if (n.indexOf('x-amz-') === 0) {
            delete req.headers[n];
        }
    });
    cf.selectRequestOriginById(API_ORIGIN);
    req.uri = '/v2/' + c.r + '/blobs/uploads/' + c.u;
    return req;
}

function apiRequest(req) {
    const m = req.method;
    if ((m === 'PATCH' || m === 'PUT' || m === 'POST') && contentLength(req) > LAMBDA_MAX) {
        return tooLarge(LAMBDA_MAX, 'the registry API');
    }
    return req;
}

// The repository of an upload, from the request the viewer response sees:
// still /_upload/<token> (the token payload) or the rewritten S3 request
// (the metadata header set above). Which one CloudFront hands over is not
// documented, so both work.
function uploadRepo(req) {
    if (req.uri.indexOf(PREFIX) === 0) {
        const parts = req.uri.slice(PREFIX.length).split('.');
        const c = parts.length === 3 ? claims(parts[1]) : null;
        return c ? c.r : '';
    }
    const r = header(req, 'x-amz-meta-berth-repo');
    return r && REPO.test(r) ? r : '';
}

function uploadResponse(req, res) {
    if (res.headers['docker-distribution-api-version']) {
        return res; // the API answered
    }
    if (res.statusCode !== 200) {
        return res;
    }
    const sum = header(res, 'x-amz-checksum-sha256');
    const hex = sum ? Buffer.from(sum, 'base64').toString('hex') : '';
    const repo = uploadRepo(req);
    if (hex.length !== 64 || !repo) {
        // Fail closed: without S3's checksum nothing says the bytes match.
        return ociError(502, 'Bad Gateway', 'BLOB_UPLOAD_INVALID',
            'blob store answered without a sha256 checksum', {});
    }
    const h = {};
    Object.keys(res.headers).forEach((n) => {
        if (n.indexOf('x-amz-') !== 0) {
            h[n] = res.headers[n];
        }
    });
    h['location'] = { value: '/v2/' + repo + '/blobs/sha256:' + hex };
    h['docker-content-digest'] = { value: 'sha256:' + hex };
    return { statusCode: 201, statusDescription: 'Created', headers: h };
}

async function handler(event) {
    const req = event.request;
    if (event.context.eventType === 'viewer-response') {
        return uploadResponse(req, event.response); // attached to /_upload/* only
    }
    return req.uri.indexOf(PREFIX) === 0 ? uploadRequest(req) : apiRequest(req);
}
