package contract

// Condition types on klambda's objects (status.conditions).
const (
	// ConditionReady: the object is usable (a Function Active, a Version published and
	// rolled out, an Alias routing, a mapping polling).
	ConditionReady = "Ready"
	// ConditionCodeResolved: code and layers were fetched and checked.
	ConditionCodeResolved = "CodeResolved"
	// ConditionRolloutComplete: the Deployment runs the current template everywhere.
	ConditionRolloutComplete = "RolloutComplete"
	// ConditionPublished (Version): the version has a number.
	ConditionPublished = "Published"
	// ConditionDeletionBlocked: a Version referenced by an Alias, or a LayerVersion in use,
	// waits for its references to go.
	ConditionDeletionBlocked = "DeletionBlocked"
	// ConditionDestinationsAuthorized: the function's service account may invoke its
	// Function destinations.
	ConditionDestinationsAuthorized = "DestinationsAuthorized"
)

// Condition reasons other components may test.
const (
	ReasonPublished          = "Published"
	ReasonUnchanged          = "Unchanged"
	ReasonPreconditionFailed = "PreconditionFailed"
	ReasonFunctionNotReady   = "FunctionNotReady"
	ReasonFunctionNotFound   = "FunctionNotFound"
	ReasonVersionNotFound    = "VersionNotFound"
	ReasonReferencedByAlias  = "ReferencedByAlias"
	ReasonInUse              = "InUse"
	ReasonResolved           = "Resolved"
	ReasonInProgress         = "InProgress"
	ReasonAccessDenied       = "AccessDenied"
)
