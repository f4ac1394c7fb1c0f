// SPDX-License-Identifier: MIT
// s3rver_sigv4.js - s3rver with the SigV4 check it lacks.
//
//   node scripts/s3rver_sigv4.js S3RVER_DIR DATA_DIR ADDRESS PORT
//
// s3rver 3.7 checks the access key id of a SigV4 request but not its
// signature (lib/middleware/authentication.js: "Signature version 4
// calculation is unimplemented"), and serves unsigned requests. For the
// S3 client's tests the local server must be as strict as S3, so this
// runs s3rver (from S3RVER_DIR, the npm package) with one more middleware
// in front of its own, which:
//   - refuses a request without an Authorization header (AccessDenied);
//   - recomputes the AWS4-HMAC-SHA256 signature of a header-signed
//     request from the request as received (S3's canonical request: the
//     path and query decoded and encoded once, RFC 3986; the signed
//     headers from the raw headers; the x-amz-content-sha256 value as the
//     payload hash) with the secret of its key (S3RVER / S3RVER), and
//     refuses a mismatch (SignatureDoesNotMatch, 403).
// Not checked: the payload's hash against the body, aws-chunked per-chunk
// signatures, the request time (RequestTimeTooSkewed), presigned (query
// string) requests, which go on to s3rver's own checks.
'use strict';

const crypto = require('crypto');
const path = require('path');

const [s3rverDir, dataDir, address, port] = process.argv.slice(2);
if (!port) {
	console.error('usage: s3rver_sigv4.js S3RVER_DIR DATA_DIR ADDRESS PORT');
	process.exit(2);
}
const S3rver = require(s3rverDir);
const S3Error = require(path.join(s3rverDir, 'lib/models/error'));
const SECRETS = new Map([['S3RVER', 'S3RVER']]);

function rfc3986(s) {
	return encodeURIComponent(s).replace(/[!'()*]/g, c => '%' + c.charCodeAt(0).toString(16).toUpperCase());
}
function decode(s, plusIsSpace) {
	try {
		return decodeURIComponent(plusIsSpace ? s.replace(/\+/g, '%20') : s);
	} catch (e) {
		return s;
	}
}
function hmac(key, data) {
	return crypto.createHmac('sha256', key).update(data, 'utf8').digest();
}
function sha256hex(data) {
	return crypto.createHash('sha256').update(data, 'utf8').digest('hex');
}

function canonicalRequest(req, signedHeaders, payloadHash) {
	const url = req.url;
	const q = url.indexOf('?');
	const rawPath = q < 0 ? url : url.slice(0, q);
	const rawQuery = q < 0 ? '' : url.slice(q + 1);
	const uri = rawPath.split('/').map(seg => rfc3986(decode(seg, false))).join('/');
	const query = rawQuery
		.split('&')
		.filter(p => p !== '')
		.map(p => {
			const eq = p.indexOf('=');
			const k = eq < 0 ? p : p.slice(0, eq);
			const v = eq < 0 ? '' : p.slice(eq + 1);
			return [rfc3986(decode(k, true)), rfc3986(decode(v, true))];
		})
		.filter(([k]) => k !== 'X-Amz-Signature')
		.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
		.map(([k, v]) => k + '=' + v)
		.join('&');
	const values = new Map();
	for (let i = 0; i < req.rawHeaders.length; i += 2) {
		const name = req.rawHeaders[i].toLowerCase();
		const value = req.rawHeaders[i + 1].trim().replace(/\s+/g, ' ');
		values.set(name, values.has(name) ? values.get(name) + ',' + value : value);
	}
	const headers = signedHeaders.map(h => h + ':' + (values.get(h) || '') + '\n').join('');
	return [req.method, uri, query, headers, signedHeaders.join(';'), payloadHash].join('\n');
}

function refuse(ctx, code, message, detail) {
	const err = new S3Error(code, message, detail);
	ctx.status = 403;
	ctx.type = 'application/xml';
	ctx.body = err.toXML();
}

async function sigv4(ctx, next) {
	const auth = ctx.get('authorization');
	if (!auth) {
		if ('X-Amz-Algorithm' in ctx.query || 'Signature' in ctx.query) return next();
		return refuse(ctx, 'AccessDenied', 'Access Denied: the request is not signed');
	}
	const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
	if (!m) return refuse(ctx, 'AccessDenied', 'Only AWS4-HMAC-SHA256 header signatures are accepted');
	const [, keyId, date, region, service, signedHeaders, signature] = m;
	const secret = SECRETS.get(keyId);
	if (!secret) {
		return refuse(ctx, 'InvalidAccessKeyId',
			'The AWS Access Key Id you provided does not exist in our records.', { AWSAccessKeyId: keyId });
	}
	const amzDate = ctx.get('x-amz-date');
	const payloadHash = ctx.get('x-amz-content-sha256');
	if (!amzDate || !payloadHash) {
		return refuse(ctx, 'AccessDenied', 'x-amz-date and x-amz-content-sha256 are required');
	}
	const creq = canonicalRequest(ctx.req, signedHeaders.split(';'), payloadHash);
	const scope = `${date}/${region}/${service}/aws4_request`;
	const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256hex(creq)].join('\n');
	let key = hmac('AWS4' + secret, date);
	for (const part of [region, service, 'aws4_request']) key = hmac(key, part);
	const expected = hmac(key, stringToSign).toString('hex');
	if (!crypto.timingSafeEqual(Buffer.from(expected), Buffer.from(signature))) {
		return refuse(ctx, 'SignatureDoesNotMatch',
			'The request signature we calculated does not match the signature you provided. ' +
			'Check your key and signing method.',
			{ AWSAccessKeyId: keyId, StringToSign: stringToSign, CanonicalRequest: creq });
	}
	return next();
}

const server = new S3rver({ directory: dataDir, address, port: Number(port), vhostBuckets: false, silent: false });
// After the logger (so refusals are logged), before everything else.
server.middleware.splice(1, 0, sigv4);
server.run().then(
	({ address: a, port: p }) => console.log('S3rver (SigV4 verified) listening on %s:%d', a, p),
	err => {
		console.error(err);
		process.exit(1);
	},
);
