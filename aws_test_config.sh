# aws_test_config.sh - the environment of AWS mode. Source it, don't run it:
#
#   source ./aws_test_config.sh
#   ./scripts/start_aws.sh --local     # local servers + bucket + tables + master
#
# By default it points at the local test servers that scripts/aws_local.sh
# starts (DynamoDB Local on 127.0.0.1:8000, s3rver on 127.0.0.1:4568, the
# key pair S3RVER / S3RVER they accept). Nothing here is a secret.
#
# For real AWS, either set ECHOFS_AWS_TARGET=aws before sourcing it, or
# edit the marked lines:
#   - the endpoints are unset, so the master talks to AWS itself;
#   - no key is set here: the master takes AWS_ACCESS_KEY_ID /
#     AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN from your environment, then
#     ~/.aws/credentials (AWS_PROFILE). Never write real keys in this file;
#   - set AWS_REGION to your region and S3_BUCKET_NAME to a bucket name of
#     your own (bucket names are global across AWS accounts);
#   - `./scripts/start_aws.sh --create` creates the bucket and tables that
#     are missing (docs/AWS.md lists the IAM permissions it needs).
# Variables already set in your shell win over the defaults below.

ECHOFS_AWS_TARGET=${ECHOFS_AWS_TARGET:-local} # local | aws

export AWS_REGION=${AWS_REGION:-us-east-1} # real AWS: your region
export S3_BUCKET_NAME=${S3_BUCKET_NAME:-echofs-chunks} # real AWS: a unique name
export DYNAMODB_FILES_TABLE=${DYNAMODB_FILES_TABLE:-echofs-files}
export DYNAMODB_CHUNKS_TABLE=${DYNAMODB_CHUNKS_TABLE:-echofs-chunks}
export DYNAMODB_SESSIONS_TABLE=${DYNAMODB_SESSIONS_TABLE:-echofs-sessions}

if [ "$ECHOFS_AWS_TARGET" = local ]; then
	# The ports scripts/aws_local.sh (started by start_aws.sh --local)
	# listens on; the endpoints the master and the aws CLI use.
	export AWS_LOCAL_DYNAMODB_PORT=${AWS_LOCAL_DYNAMODB_PORT:-8000}
	export AWS_LOCAL_S3_PORT=${AWS_LOCAL_S3_PORT:-4568}
	export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$AWS_LOCAL_DYNAMODB_PORT
	export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$AWS_LOCAL_S3_PORT
	# s3rver's only key pair (DynamoDB Local takes any).
	export AWS_ACCESS_KEY_ID=S3RVER
	export AWS_SECRET_ACCESS_KEY=S3RVER
	unset AWS_SESSION_TOKEN AWS_PROFILE
else
	# Real AWS: the standard endpoints, your own credentials.
	unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3 AWS_ENDPOINT_URL_DYNAMODB
	unset AWS_LOCAL_DYNAMODB_PORT AWS_LOCAL_S3_PORT
	if [ "${AWS_ACCESS_KEY_ID:-}" = S3RVER ]; then # left by a local sourcing
		unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
	fi
fi
export AWS_DEFAULT_REGION=$AWS_REGION # what the aws CLI reads
