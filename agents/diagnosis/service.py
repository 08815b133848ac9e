"""One object the entry points hold (the CLI, the REST route, the eval): diagnose by execution id.

    service = DiagnosisService(executions, secrets=SecretValues(store), llm=llm_settings_or_none)
    diagnosis = await service.diagnose(execution_id)

Every call reads the credential values to mask afresh (a credential set a moment ago is masked too) and
uses the LLM only when settings were given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents.diagnosis.graph import SimilarFinder, diagnose
from agents.diagnosis.llm import LlmRefiner, LlmSettings
from agents.diagnosis.model import Diagnosis

if TYPE_CHECKING:
    from control_plane.services.executions import ExecutionService
    from control_plane.services.secrets import SecretValues


class DiagnosisService:
    def __init__(self, executions: ExecutionService, *, secrets: SecretValues | None = None,
                 similar: SimilarFinder | None = None, llm: LlmSettings | None = None) -> None:
        self.executions = executions
        self.secrets = secrets
        self.similar = similar
        self.llm = llm

    async def diagnose(self, execution_id: str) -> Diagnosis:
        """NotFoundError (control_plane.errors) for an unknown id."""
        known = await self.secrets.all() if self.secrets is not None else frozenset()
        refiner = LlmRefiner(self.llm, secrets=known) if self.llm is not None else None
        try:
            return await diagnose(execution_id, executions=self.executions, similar=self.similar, llm=refiner,
                                  secrets=sorted(known))
        finally:
            if refiner is not None:
                await refiner.close()
