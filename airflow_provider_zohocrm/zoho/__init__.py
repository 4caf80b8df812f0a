"""Zoho CRM protocol logic, free of Airflow: data centers, OAuth, requests and retries, paging, Unblock Email."""

from airflow_provider_zohocrm.zoho.auth import (
    AccessToken,
    FileTokenStore,
    NullTokenStore,
    OAuthCredentials,
    TokenManager,
    TokenStore,
    ZohoTokenAuth,
)
from airflow_provider_zohocrm.zoho.client import RetryPolicy, ZohoCRMClient, ZohoResponse
from airflow_provider_zohocrm.zoho.datacenters import DATA_CENTERS, DataCenter, resolve_endpoints
from airflow_provider_zohocrm.zoho.errors import (
    ZohoAuthError,
    ZohoConfigError,
    ZohoCRMError,
    ZohoInvalidClientError,
    ZohoPageTokenExpiredError,
    ZohoRateLimitError,
    ZohoRefreshTokenError,
    ZohoRequestError,
    ZohoResponseError,
    ZohoScopeError,
    ZohoServerError,
    ZohoTokenThrottledError,
    ZohoTransportError,
    ZohoValidationError,
)
from airflow_provider_zohocrm.zoho.unblock import Outcome, UnblockReport, UnblockRequest

__all__ = [
    "DATA_CENTERS",
    "AccessToken",
    "DataCenter",
    "FileTokenStore",
    "NullTokenStore",
    "OAuthCredentials",
    "Outcome",
    "RetryPolicy",
    "TokenManager",
    "TokenStore",
    "UnblockReport",
    "UnblockRequest",
    "ZohoAuthError",
    "ZohoCRMClient",
    "ZohoCRMError",
    "ZohoConfigError",
    "ZohoInvalidClientError",
    "ZohoPageTokenExpiredError",
    "ZohoRateLimitError",
    "ZohoRefreshTokenError",
    "ZohoRequestError",
    "ZohoResponse",
    "ZohoResponseError",
    "ZohoScopeError",
    "ZohoServerError",
    "ZohoTokenAuth",
    "ZohoTokenThrottledError",
    "ZohoTransportError",
    "ZohoValidationError",
    "resolve_endpoints",
]
