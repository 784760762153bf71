"""MLflow models-from-code entry point: loading a logged fraud model runs this file, so nothing is pickled."""
import mlflow
from apps.fraud.scorer import FraudPyfuncModel

mlflow.models.set_model(FraudPyfuncModel())
