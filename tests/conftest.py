from __future__ import annotations

from tests.stack import service_fixture

kafka = service_fixture("kafka")
opensearch = service_fixture("opensearch")
s3 = service_fixture("s3")
mlflow_server = service_fixture("mlflow-server")
postgres = service_fixture("postgres")
airflow = service_fixture("airflow")
kubernetes = service_fixture("kubernetes")
shipper = service_fixture("shipper")
