"""MLflow models-from-code entry point: loading a logged driving model runs this file, so nothing is pickled."""
import mlflow
from apps.driving.scorer import DrivingPyfuncModel

mlflow.models.set_model(DrivingPyfuncModel())
