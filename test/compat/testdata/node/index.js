// A Node.js function for the aws-lambda-ric compatibility test.
exports.handler = async (event, context) => {
  switch (event.op) {
    case 'throw':
      throw new Error('node says no');
    case 'sleep':
      await new Promise((resolve) => setTimeout(resolve, event.ms));
      return { slept: true };
    case 'runtime':
      return { version: process.version, arch: process.arch, execPath: process.execPath };
    case 'context':
      return {
        requestId: context.awsRequestId,
        remainingMs: context.getRemainingTimeInMillis(),
        invokedArn: context.invokedFunctionArn,
        custom: context.clientContext && context.clientContext.Custom,
      };
  }
  console.log('node got', JSON.stringify(event));
  return { echo: event };
};
