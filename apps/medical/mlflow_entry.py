"""MLflow models-from-code entry point: loading a logged medical model runs this file, so nothing is pickled."""
import mlflow
from apps.medical.scorer import MedicalPyfuncModel

mlflow.models.set_model(MedicalPyfuncModel())
