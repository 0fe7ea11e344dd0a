// A Node.js handler, unchanged from what runs on AWS Lambda (runtime nodejs20.x,
// handler index.handler); the npm aws-lambda-ric in the base image calls it.
export const handler = async (event, context) => {
  return {
    message: `Hello, ${event.name ?? "world"}!`,
    requestId: context.awsRequestId,
    function: context.functionName,
    node: process.version,
  };
};
