# crm-admin: one image running `crm-admin serve`, configured by CRM_* environment variables.
#   docker build -t crm-admin .
#   docker run -d -p 8000:8000 -v crm-data:/app/data \
#     -e CRM_DATABASE_URL='mysql+pymysql://crm:pass@db:3306/crm?charset=utf8mb4' \
#     -e CRM_SECRET_KEY=... -e CRM_ENV=production -e CRM_HTTPS=true crm-admin
# Without CRM_DATABASE_URL the embedded SQLite database lives in the /app/data volume.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TZ=Asia/Shanghai \
    CRM_DATA_DIR=/app/data

# mariadb-client: `crm-admin backup/restore` against MariaDB/MySQL (mariadb-dump, mariadb).
RUN apt-get update \
    && apt-get install -y --no-install-recommends mariadb-client tzdata \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 crm

WORKDIR /app
# Dependencies first (cached while only the code changes).
COPY pyproject.toml README.md ./
COPY crm_admin/__init__.py crm_admin/__init__.py
RUN pip install -e . && rm -rf crm_admin

COPY crm_admin crm_admin
COPY policies policies
COPY seed seed
COPY rbac_model.conf ./
# Editable install: seed/, policies/ and rbac_model.conf are read from /app at run time.
RUN pip install --no-deps -e . \
    && mkdir -p /app/data && chown -R crm:crm /app/data

USER crm
VOLUME ["/app/data"]
EXPOSE 8000
# Liveness only (/healthz): a database outage shows 503 pages and heals by itself, no restart needed.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"

# Behind a reverse proxy set CRM_TRUSTED_PROXIES to its address so X-Forwarded-* are honoured.
CMD ["crm-admin", "serve", "--host", "0.0.0.0", "--port", "8000"]
