"""Commands for the AWS deployment: what `sam deploy` and `sam delete` need around them."""
