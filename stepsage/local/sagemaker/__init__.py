"""The local SageMaker emulator: training and tuning jobs, models, endpoints and their model servers."""
