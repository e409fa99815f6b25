#!/bin/sh
# dpf schedules on Google Cloud: a Cloud Run Job per product, started by a Cloud Scheduler job.
# Set PROJECT and SERVICE_ACCOUNT (it runs the jobs and lets Cloud Scheduler start them), then run this.
# Build and push the image first, e.g. `gcloud builds submit --tag "$IMAGE" .` with the repository's Dockerfile.
set -eu
PROJECT="${PROJECT:?set PROJECT to the Google Cloud project}"
SERVICE_ACCOUNT="${SERVICE_ACCOUNT:?set SERVICE_ACCOUNT to the service account e-mail}"
REGION="${REGION:-europe-west1}"
IMAGE="${IMAGE:-europe-docker.pkg.dev/acme-data/dpf/dpf:latest}"

# sales_data_product: At 02:00.
gcloud run jobs deploy dpf-sales-data-product --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
  --args=run,sales_data_product,--log-format,json --set-env-vars DPF_TARGET=gcp \
  --max-retries 0 --task-timeout 3600s --service-account "$SERVICE_ACCOUNT"
gcloud scheduler jobs create http dpf-sales-data-product --project "$PROJECT" --location "$REGION" \
  --schedule '0 2 * * *' --time-zone UTC --http-method POST \
  --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/dpf-sales-data-product:run" \
  --oauth-service-account-email "$SERVICE_ACCOUNT" \
|| gcloud scheduler jobs update http dpf-sales-data-product --project "$PROJECT" --location "$REGION" \
  --schedule '0 2 * * *' --time-zone UTC

# weather_cities: At minute 30, of every 6 hours.
gcloud run jobs deploy dpf-weather-cities --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
  --args=run,weather_cities,--log-format,json --set-env-vars DPF_TARGET=gcp \
  --max-retries 0 --task-timeout 3600s --service-account "$SERVICE_ACCOUNT" \
  --tasks 2 --parallelism 2
gcloud scheduler jobs create http dpf-weather-cities --project "$PROJECT" --location "$REGION" \
  --schedule '30 */6 * * *' --time-zone UTC --http-method POST \
  --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/dpf-weather-cities:run" \
  --oauth-service-account-email "$SERVICE_ACCOUNT" \
|| gcloud scheduler jobs update http dpf-weather-cities --project "$PROJECT" --location "$REGION" \
  --schedule '30 */6 * * *' --time-zone UTC

# weather_data_product: At minute 0, of every 6 hours.
gcloud run jobs deploy dpf-weather-data-product --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
  --args=run,weather_data_product,--log-format,json --set-env-vars DPF_TARGET=gcp \
  --max-retries 0 --task-timeout 3600s --service-account "$SERVICE_ACCOUNT"
gcloud scheduler jobs create http dpf-weather-data-product --project "$PROJECT" --location "$REGION" \
  --schedule '0 */6 * * *' --time-zone UTC --http-method POST \
  --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/dpf-weather-data-product:run" \
  --oauth-service-account-email "$SERVICE_ACCOUNT" \
|| gcloud scheduler jobs update http dpf-weather-data-product --project "$PROJECT" --location "$REGION" \
  --schedule '0 */6 * * *' --time-zone UTC
